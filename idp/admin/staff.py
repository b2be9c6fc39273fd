"""Staff members: creating them, their sign-in with a second factor, their console sessions; no HTTP.

A console session starts with the password and is complete once the second factor is given (and,
at the first sign-in, once the temporary password is changed and TOTP enrolled). Sensitive
actions ask for the password and a code again when the last proof is older than a few minutes.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from sqlalchemy import delete, select, update

from idp.accounts.lockout import LockedOut
from idp.accounts.models import Account, AccountType
from idp.accounts.password_policy import PasswordPolicyService, Violation
from idp.accounts.passwords import passphrase
from idp.accounts.preferences import PreferencesService
from idp.accounts.registration import account_password_context
from idp.accounts.service import (
    AccountService,
    InvalidCredentials,
    PasswordChangeRequired,
    SignInContext,
)
from idp.admin.actor import Actor
from idp.admin.models import BackupCode, StaffMember, StaffRole, StaffSchool, StaffSession
from idp.admin.totp import (
    TotpCipher,
    backup_code_hash,
    looks_like_backup_code,
    matching_step,
    new_backup_codes,
    new_totp_secret,
    provisioning_uri,
    qr_svg,
)
from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession, new_id
from idp.students.models import School
from idp.tokens import new_secret, secret_hash

# Sensitive actions (emulation, delete, reset all, role changes) need a proof this recent.
FRESH_PROOF = timedelta(minutes=5)
# Writing last_seen_at on every page would make every page a write; a minute is precise enough.
TOUCH_INTERVAL = timedelta(seconds=60)
TEMPORARY_PASSWORD_WORDS = 5
MAX_CODE_LENGTH = 32


class StaffRefused(ValueError):
    """``staff create`` input that cannot be used; the message says why, in one line."""


class WrongCode(Exception):
    """The TOTP or backup code is wrong, expired, or already used."""


class NotEnrolled(Exception):
    """The step needs a second factor this staff member has not enrolled yet."""


class Step(enum.StrEnum):
    """What a console session needs next before any console page opens."""

    CODE = "code"
    CHANGE_PASSWORD = "change-password"  # noqa: S105
    ENROL = "enrol"
    READY = "ready"


@dataclass(frozen=True)
class Console:
    """A live console session with its staff member, and the step it is at."""

    row: StaffSession
    account: Account
    member: StaffMember
    school_ids: frozenset[str]
    step: Step

    @property
    def actor(self) -> Actor:
        return Actor.staff(self.account.id, self.member.role, self.school_ids)

    def proved_since(self, moment: datetime) -> bool:
        """Whether both the password and the second factor were given at or after ``moment``."""
        second = self.row.second_factor_at
        return second is not None and self.row.password_at >= moment and second >= moment


@dataclass(frozen=True)
class CreatedStaff:
    account: Account
    # The generated temporary password, shown once; None when the caller chose the password.
    temporary_password: str | None


@dataclass(frozen=True)
class StartedConsole:
    cookie_value: str
    console: Console


@dataclass(frozen=True)
class Enrolment:
    secret: str
    uri: str
    qr_svg: str


class StaffService:
    def __init__(
        self,
        session: DbSession,
        *,
        accounts: AccountService,
        policies: PasswordPolicyService,
        preferences: Callable[[], PreferencesService],
        clock: Clock,
        cipher: TotpCipher,
        idle: timedelta,
        district_name: Callable[[], str],
    ) -> None:
        self.session = session
        self.accounts = accounts
        self.policies = policies
        self.preferences = preferences
        self.clock = clock
        self.cipher = cipher
        self.idle = idle
        self.district_name = district_name

    # --- staff members -------------------------------------------------------------------------
    def create(
        self,
        *,
        username: str,
        email: str,
        first_name: str,
        last_name: str,
        role: StaffRole | str,
        school_codes: Sequence[str] = (),
        password: str | None = None,
        actor: str = "cli",
    ) -> CreatedStaff:
        """Create a staff member who must change the password and enrol TOTP at first sign-in."""
        try:
            return self._create(
                username, email, first_name, last_name, StaffRole(role), school_codes, password, actor
            )
        except Exception:
            self.session.rollback()  # nothing half-written
            raise

    def _create(
        self,
        username: str,
        email: str,
        first_name: str,
        last_name: str,
        role: StaffRole,
        school_codes: Sequence[str],
        password: str | None,
        actor: str,
    ) -> CreatedStaff:
        codes = list(dict.fromkeys(code.strip() for code in school_codes if code.strip()))
        if role is StaffRole.SCHOOL_ADMIN and not codes:
            raise StaffRefused("a school admin needs at least one --school")
        if role is not StaffRole.SCHOOL_ADMIN and codes:
            raise StaffRefused(f"a {role.value} reaches the whole district: --school is for school admins")
        schools = {
            school.code: school
            for school in self.session.execute(select(School).where(School.code.in_(codes))).scalars()
        }
        unknown = [code for code in codes if code not in schools]
        if unknown:
            raise StaffRefused(f"unknown school code: {', '.join(unknown)}")
        if not email.strip() or "@" not in email:
            raise StaffRefused("an email address is required")
        generated = password is None
        account = self.accounts.create(
            username=username,
            email=email,
            # Replaced below: the password must be checked against the account's own words.
            password=password or new_secret("tmp"),
            first_name=first_name,
            last_name=last_name,
            account_type=AccountType.STAFF,
            temporary=True,
        )
        rules = self.policies.district_default()
        context = account_password_context(account, self.district_name())
        if password is None:
            password = self._generate(rules.check, context)
        else:
            violations = rules.check(password, context=context)
            if violations:
                raise StaffRefused("the password does not meet the requirements: " + _worded(violations))
        self.policies.set_temporary_password(account, password)
        self.session.add(StaffMember(account_id=account.id, role=role, created_at=self.clock.now()))
        self.session.flush()
        for code in codes:
            self.session.add(StaffSchool(account_id=account.id, school_id=schools[code].id))
        audit(
            self.session,
            "staff.created",
            account_id=account.id,
            actor=actor,
            role=role.value,
            schools=codes,
            generated_password=generated,
        )
        self.session.commit()
        return CreatedStaff(account, password if generated else None)

    @staticmethod
    def _generate(check: Callable[..., list[Violation]], context: list[str]) -> str:
        words = TEMPORARY_PASSWORD_WORDS
        for _ in range(100):
            candidate = passphrase(words)
            violations = check(candidate, context=context)
            if not violations:
                return candidate
            if Violation.TOO_SHORT in violations:
                words += 1
        raise RuntimeError("no passphrase passes this policy")

    def school_ids(self, account_id: str) -> frozenset[str]:
        return frozenset(
            self.session.execute(
                select(StaffSchool.school_id).where(StaffSchool.account_id == account_id)
            ).scalars()
        )

    def actor_for(self, account_id: str) -> Actor:
        """Return the staff member ``account_id`` as the admin services' actor."""
        member = self.session.get(StaffMember, account_id)
        if member is None:
            raise LookupError(f"no staff member {account_id}")
        return Actor.staff(account_id, member.role, self.school_ids(account_id))

    # --- signing in ----------------------------------------------------------------------------
    def sign_in(self, username: str, password: str, context: SignInContext) -> StartedConsole:
        """Check the password under the sign-in lockout and open a console session awaiting its
        second factor; raise ``InvalidCredentials``, ``LockedOut``, ``AccountDisabled`` … as the
        parents' sign-in does. Only staff accounts can: anyone else is refused as a wrong password.
        """
        try:
            account = self.accounts.authenticate(
                username, password, context, account_types=(AccountType.STAFF,)
            )
        except PasswordChangeRequired as required:
            # The password is right; the console asks for the new one before anything else.
            account = required.account
        except Exception:
            self._failed(username, context)
            self.session.commit()
            raise
        if self.session.get(StaffMember, account.id) is None:
            # A staff-typed account that ``idp staff create`` did not make has no role: refused alike.
            self._failed(username, context)
            self.session.commit()
            raise InvalidCredentials()
        now = self.clock.now()
        cookie_value = new_secret("stf")
        row = StaffSession(
            id=new_id(),
            token_hash=secret_hash(cookie_value),
            account_id=account.id,
            created_at=now,
            last_seen_at=now,
            password_at=now,
            second_factor_at=None,
            ip_address=context.ip_address,
            user_agent=(context.user_agent or "")[:512] or None,
        )
        self.session.add(row)
        self.session.commit()
        console = self._console(row, account)
        assert console is not None
        return StartedConsole(cookie_value, console)

    def _failed(self, username: str, context: SignInContext) -> None:
        # The candidates' own guard: PostgreSQL refuses a NUL in a parameter.
        sane = len(username) <= 1024 and "\x00" not in username
        found = self.accounts.find_by_username(username) if sane else None
        account_id = found.id if found is not None and found.type is AccountType.STAFF else None
        audit(self.session, "staff.signin_failed", account_id=account_id, **context.audited())

    def find(self, cookie_value: str | None) -> Console | None:
        """Return the live console session behind ``cookie_value``: not idle too long, its
        account still staff and available. Seeing it moves its last-seen time (at most once a minute)."""
        if not cookie_value or len(cookie_value) > 100:
            return None
        row = self.session.execute(
            select(StaffSession).where(StaffSession.token_hash == secret_hash(cookie_value))
        ).scalar_one_or_none()
        if row is None:
            return None
        now = self.clock.now()
        if now - row.last_seen_at > self.idle:
            return None
        account = self.session.get(Account, row.account_id)
        if account is None or not account.is_available(now):
            return None
        console = self._console(row, account)
        if console is not None and now - row.last_seen_at > TOUCH_INTERVAL:
            row.last_seen_at = now
            self.session.commit()
        return console

    def find_by_id(self, session_id: str) -> Console | None:
        """Return the console session ``session_id`` as it is now, whatever its idle time."""
        row = self.session.get(StaffSession, session_id)
        account = self.session.get(Account, row.account_id) if row is not None else None
        return self._console(row, account) if row is not None and account is not None else None

    def _console(self, row: StaffSession, account: Account) -> Console | None:
        member = self.session.get(StaffMember, account.id)
        if member is None or account.type is not AccountType.STAFF:
            return None
        enrolled = member.totp_confirmed_at is not None
        if enrolled and row.second_factor_at is None:
            step = Step.CODE
        elif self.policies.change_due(account) is not None:
            step = Step.CHANGE_PASSWORD
        elif not enrolled:
            step = Step.ENROL
        else:
            step = Step.READY
        return Console(row, account, member, self.school_ids(account.id), step)

    def verify_code(self, console: Console, code: str, context: SignInContext) -> None:
        """Complete the sign-in with a TOTP or backup code; raise ``WrongCode`` or ``LockedOut``."""
        self._check_code(console, code, context)
        console.row.second_factor_at = self.clock.now()
        audit(self.session, "staff.signed_in", account_id=console.account.id, **context.audited())
        self.accounts.record_signin(console.account, context)
        self.session.commit()

    def prove_again(self, console: Console, password: str, code: str, context: SignInContext) -> None:
        """Prove the password and a code again for sensitive actions; raise ``InvalidCredentials``,
        ``WrongCode`` or ``LockedOut``."""
        try:
            self.accounts.verify_password(console.account, password, context)
        except (InvalidCredentials, LockedOut):
            self.session.commit()  # the failure's audit event stays
            raise
        self._check_code(console, code, context)
        now = self.clock.now()
        console.row.password_at = console.row.second_factor_at = now
        audit(self.session, "staff.reauthenticated", account_id=console.account.id, **context.audited())
        self.session.commit()

    def _check_code(self, console: Console, code: str, context: SignInContext) -> None:
        """Accept a code once, counted by the username's lockout; else audit and raise."""
        member = console.member
        if member.totp_secret is None or member.totp_confirmed_at is None:
            raise NotEnrolled()
        lockout = self.accounts.lockout
        started = lockout.begin(lockout.user_key(console.account.username)) if lockout else None
        accepted = self._use_totp(member, code) or self._use_backup_code(member, code)
        if lockout is not None and started is not None:
            if accepted:
                lockout.succeeded(started)
            elif lockout.failed(started):
                audit(self.session, "account.locked", account_id=console.account.id, **context.audited())
        if not accepted:
            audit(
                self.session, "staff.second_factor_failed", account_id=console.account.id, **context.audited()
            )
            self.session.commit()
            raise WrongCode()

    def _use_totp(self, member: StaffMember, code: str) -> bool:
        if len(code) > MAX_CODE_LENGTH or member.totp_secret is None:
            return False
        try:
            secret = self.cipher.decrypt(member.totp_secret)
        except InvalidTag:
            # Encrypted under an earlier IDP_SECRET_KEY: no code can match; backup codes still do.
            return False
        step = matching_step(secret, code, self.clock.now())
        if step is None:
            return False
        # One UPDATE decides: of two requests with the same code, only one moves the step.
        result = self.session.execute(
            update(StaffMember)
            .where(StaffMember.account_id == member.account_id, StaffMember.totp_last_step < step)
            .values(totp_last_step=step)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        self.session.refresh(member)
        return True

    def _use_backup_code(self, member: StaffMember, code: str) -> bool:
        if len(code) > MAX_CODE_LENGTH or not looks_like_backup_code(code):
            return False
        wanted = backup_code_hash(code)
        unused = self.session.execute(
            select(BackupCode.id, BackupCode.code_hash).where(
                BackupCode.account_id == member.account_id, BackupCode.used_at.is_(None)
            )
        ).all()
        match = next((row.id for row in unused if hmac.compare_digest(row.code_hash, wanted)), None)
        if match is None:
            return False
        result = self.session.execute(
            update(BackupCode)
            .where(BackupCode.id == match, BackupCode.used_at.is_(None))
            .values(used_at=self.clock.now())
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        left = len(unused) - 1
        audit(self.session, "staff.backup_code_used", account_id=member.account_id, left=left)
        return True

    # --- the first sign-in -----------------------------------------------------------------------
    def change_password(
        self, console: Console, *, current: str, new: str, confirm: str, context: SignInContext
    ) -> None:
        """The forced change of a temporary or expired password; raise ``ChangeRefused`` or ``LockedOut``."""
        self.preferences().change_password(
            console.account, current=current, new=new, confirm=confirm, context=context, required=True
        )
        # Whoever knew the old password is signed out of every other console session.
        self.session.execute(
            delete(StaffSession).where(
                StaffSession.account_id == console.account.id, StaffSession.id != console.row.id
            )
        )
        self.session.commit()

    def enrolment(self, console: Console) -> Enrolment:
        """Return the pending TOTP enrolment, made once and kept until a code confirms it."""
        member = console.member
        if member.totp_confirmed_at is not None:
            raise ValueError("already enrolled")
        secret = self._pending_secret(member)
        uri = provisioning_uri(secret, username=console.account.username, issuer=self.district_name())
        return Enrolment(secret, uri, qr_svg(uri))

    def _pending_secret(self, member: StaffMember) -> str:
        if member.totp_secret is not None:
            try:
                return self.cipher.decrypt(member.totp_secret)
            except InvalidTag:
                pass  # made under an earlier IDP_SECRET_KEY: never confirmed, so simply replaced
        secret = new_totp_secret()
        member.totp_secret = self.cipher.encrypt(secret)
        self.session.commit()
        return secret

    def confirm_enrolment(self, console: Console, code: str, context: SignInContext) -> list[str]:
        """Confirm enrolment with a code from the new authenticator; return the backup codes, once.

        Raises ``WrongCode`` (counted by the lockout).
        """
        member = console.member
        if member.totp_secret is None or member.totp_confirmed_at is not None:
            raise WrongCode()
        lockout = self.accounts.lockout
        started = lockout.begin(lockout.user_key(console.account.username)) if lockout else None
        if not self._use_totp(member, code):
            if lockout is not None and started is not None:
                lockout.failed(started)
            audit(
                self.session, "staff.second_factor_failed", account_id=member.account_id, **context.audited()
            )
            self.session.commit()
            raise WrongCode()
        if lockout is not None and started is not None:
            lockout.succeeded(started)
        now = self.clock.now()
        member.totp_confirmed_at = now
        codes = new_backup_codes()
        self.session.execute(delete(BackupCode).where(BackupCode.account_id == member.account_id))
        self.session.add_all(
            BackupCode(account_id=member.account_id, code_hash=backup_code_hash(code), created_at=now)
            for code in codes
        )
        console.row.second_factor_at = now
        audit(self.session, "staff.totp_enrolled", account_id=member.account_id, **context.audited())
        audit(self.session, "staff.signed_in", account_id=member.account_id, **context.audited())
        self.accounts.record_signin(console.account, context)
        self.session.commit()
        return codes

    # --- signing out ---------------------------------------------------------------------------
    def sign_out(self, cookie_value: str | None) -> None:
        """End the console session behind ``cookie_value``, if there is one."""
        if not cookie_value or len(cookie_value) > 100:
            return
        row = self.session.execute(
            select(StaffSession).where(StaffSession.token_hash == secret_hash(cookie_value))
        ).scalar_one_or_none()
        if row is None:
            return
        audit(self.session, "staff.signed_out", account_id=row.account_id)
        self.session.delete(row)
        self.session.commit()

    def end_idle(self, limit: int = 500) -> int:
        """Delete up to ``limit`` console sessions idle past the timeout (already refused at use)."""
        ids = list(
            self.session.execute(
                select(StaffSession.id)
                .where(StaffSession.last_seen_at < self.clock.now() - self.idle)
                .limit(limit)
            ).scalars()
        )
        if ids:
            self.session.execute(delete(StaffSession).where(StaffSession.id.in_(ids)))
        return len(ids)


def _worded(violations: Sequence[Violation]) -> str:
    return ", ".join(violation.value.replace("_", " ") for violation in violations)
