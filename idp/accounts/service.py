"""Accounts: finding them, checking their passwords under the lockout, creating them; no HTTP."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from prometheus_client import Counter
from sqlalchemy import select

from idp.accounts.devices import TrustedDevice
from idp.accounts.lockout import LockedOut, Lockout, Started
from idp.accounts.models import Account, AccountStatus, AccountType
from idp.accounts.password_policy import ChangeReason, PasswordPolicyService
from idp.accounts.passwords import MAX_PASSWORD_LENGTH, PasswordHasher
from idp.accounts.skeleton import confusable_skeleton
from idp.accounts.usernames import MAX_USERNAME_LENGTH, username_key
from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession

SIGNIN_FAILURES = Counter("idp_signin_failures", "Sign-ins refused for a wrong username or password.")
SIGNIN_LOCKED = Counter(
    "idp_signin_locked", "Sign-ins refused without a password check because the username was locked."
)
LOCKOUTS = Counter("idp_lockouts", "Usernames or devices locked after too many failures.", ["scope"])


class InvalidCredentials(Exception):
    """Unknown username or wrong password: the two are never told apart."""


class AccountDisabled(Exception):
    pass


class AccountExpired(Exception):
    pass


class UsernameTaken(ValueError):
    pass


class PasswordChangeRequired(Exception):
    """The password is right but temporary or expired: "Change Your Password" comes first.

    Nothing of the sign-in is recorded yet; ``SignInService.complete`` does that after the change.
    """

    def __init__(self, account: Account, reason: ChangeReason) -> None:
        super().__init__(reason.value)
        self.account = account
        self.reason = reason


@dataclass(frozen=True)
class SignInContext:
    ip_address: str | None = None
    user_agent: str | None = None
    # The browser's device cookie, already verified (idp.accounts.devices).
    devices: tuple[TrustedDevice, ...] = ()


class AccountService:
    def __init__(
        self,
        session: DbSession,
        *,
        hasher: PasswordHasher,
        clock: Clock,
        lockout: Lockout | None = None,
        policies: PasswordPolicyService | None = None,
    ) -> None:
        self.session = session
        self.hasher = hasher
        self.clock = clock
        # None only where no brute-force protection applies (unit tests of other rules).
        self.lockout = lockout
        # None only where no password is ever forced to change (unit tests of other rules).
        self.policies = policies

    def find_by_username(self, username: str) -> Account | None:
        return self.session.execute(
            select(Account).where(Account.username_key == username_key(username))
        ).scalar_one_or_none()

    def username_in_use(self, username: str, *, except_account_id: str | None = None) -> bool:
        """Return whether ``username`` or a look-alike of it (same UTS #39 skeleton) is taken."""
        clash = select(Account.id).where(
            (Account.username_key == username_key(username))
            | (Account.username_skeleton == confusable_skeleton(username))
        )
        if except_account_id is not None:
            clash = clash.where(Account.id != except_account_id)
        return self.session.execute(clash.limit(1)).first() is not None

    def authenticate(self, username: str, password: str, context: SignInContext) -> Account:
        """Return the account if ``password`` is right and it may sign in; else raise why not.

        The account is read, then the connection goes back to the pool before argon2: a slow hash,
        or a connection dropped meanwhile, holds nobody else's. What follows (the audit of the
        outcome, the records of ``SignInService``) is a new short transaction.
        """
        account = None
        # NUL is in no username, and PostgreSQL refuses it in a query parameter (an error, not a miss).
        if (
            len(username) <= MAX_USERNAME_LENGTH * 4
            and len(password) <= MAX_PASSWORD_LENGTH
            and "\x00" not in username
        ):
            account = self.find_by_username(username)
        self.session.commit()
        if not self._guarded_check(username, account, password, context):
            SIGNIN_FAILURES.inc()
            audit(
                self.session,
                "signin.failed",
                account_id=account.id if account is not None else None,
                ip_address=context.ip_address,
                reason="credentials",
            )
            raise InvalidCredentials()
        assert account is not None
        if account.status is AccountStatus.DISABLED:
            audit(self.session, "signin.refused", account_id=account.id, reason="disabled")
            raise AccountDisabled()
        if account.has_expired(self.clock.now()):
            audit(self.session, "signin.refused", account_id=account.id, reason="expired")
            raise AccountExpired()
        if self.hasher.needs_rehash(account.password_hash):
            account.password_hash = self.hasher.hash(password)
            audit(self.session, "password_hash.upgraded", account_id=account.id)
        reason = self.policies.change_due(account) if self.policies is not None else None
        if reason is not None:
            audit(self.session, "signin.password_change_required", account_id=account.id, reason=reason.value)
            raise PasswordChangeRequired(account, reason)
        return account

    def record_signin(self, account: Account, context: SignInContext) -> None:
        """Count a completed sign-in: the previous one becomes ``last_login_at`` (a claim)."""
        account.last_login_at, account.last_login_ip = account.current_login_at, account.current_login_ip
        account.current_login_at, account.current_login_ip = self.clock.now(), context.ip_address
        account.login_count += 1
        audit(self.session, "signin.succeeded", account_id=account.id, ip_address=context.ip_address)

    def verify_password(self, account: Account, password: str, context: SignInContext) -> None:
        """Check ``account``'s current password (the change-password page) under the sign-in lockout.

        A wrong password counts as a failed sign-in of the account's username (or of the
        browser's device); raise ``InvalidCredentials``, ``LockedOut`` or ``HashingBusy``.
        """
        if len(password) > MAX_PASSWORD_LENGTH or not self._guarded_check(
            account.username, account, password, context
        ):
            SIGNIN_FAILURES.inc()
            audit(
                self.session,
                "password_check.failed",
                account_id=account.id,
                ip_address=context.ip_address,
            )
            raise InvalidCredentials()

    def _guarded_check(
        self, username: str, account: Account | None, password: str, context: SignInContext
    ) -> bool:
        """Verify the password unless the lockout refuses; count the attempt; return whether it was right."""
        if self.lockout is None:
            with self._hashing_slot():
                return self._verify(account, password)
        try:
            key, via = self._lockout_subject(username, account, context)
            # The lock is read first so that a locked username never waits for an argon2 slot.
            with self._hashing_slot():
                started = self.lockout.begin(key)
                right = self._verify(account, password)
        except LockedOut:
            SIGNIN_LOCKED.inc()
            audit(
                self.session,
                "signin.refused",
                account_id=account.id if account is not None else None,
                ip_address=context.ip_address,
                reason="locked",
            )
            raise
        if right:
            self.lockout.succeeded(started)
        elif self.lockout.failed(started):
            self._record_lock(started, via, account, context)
        return right

    def _lockout_subject(
        self, username: str, account: Account | None, context: SignInContext
    ) -> tuple[str, str]:
        """Return the key this attempt counts against: the browser's device if trusted, else the username."""
        assert self.lockout is not None
        if account is not None:
            for device in context.devices:
                if device.account_id == account.id:
                    key = self.lockout.device_key(account.id, device.device_id)
                    # A device that failed too often is trusted no more: it counts as any browser.
                    if not self.lockout.is_locked(key):
                        return key, "device"
                    break
        key = self.lockout.user_key(username)
        self.lockout.check(key)
        return key, "username"

    def _record_lock(
        self, started: Started, via: str, account: Account | None, context: SignInContext
    ) -> None:
        assert self.lockout is not None
        LOCKOUTS.labels(scope=via).inc()
        audit(
            self.session,
            "account.locked" if via == "username" else "device.locked",
            account_id=account.id if account is not None else None,
            ip_address=context.ip_address,
            failures=started.attempt.count,
            seconds=int(self.lockout.policy.duration.total_seconds()),
        )

    def _verify(self, account: Account | None, password: str) -> bool:
        if account is None:
            # Equal cost whether or not the username exists: timing tells nothing.
            self.hasher.verify_dummy(password[:MAX_PASSWORD_LENGTH])
            return False
        return self.hasher.verify(account.password_hash, password)

    def _hashing_slot(self) -> AbstractContextManager[None]:
        # The provider's hasher bounds concurrent argon2 runs (idp.accounts.hashing); hold its slot
        # across the lockout step too, so that a granted attempt is not then refused for want of one.
        slots = getattr(self.hasher, "slots", None)
        return slots.hold() if slots is not None else nullcontext()

    def unlock(self, username: str) -> bool:
        """Lift the lock of ``username`` (``idp accounts unlock``); return whether it was locked."""
        if self.lockout is None:
            return False
        was_locked = self.lockout.unlock_username(username)
        account = self.find_by_username(username)
        audit(
            self.session,
            "account.unlocked",
            account_id=account.id if account is not None else None,
            was_locked=was_locked,
        )
        return was_locked

    def create(
        self,
        *,
        username: str,
        email: str,
        password: str,
        first_name: str,
        last_name: str,
        account_type: AccountType = AccountType.PARENT,
        temporary: bool = False,
        status: AccountStatus = AccountStatus.CONFIRMED,
    ) -> Account:
        """Create an account; a temporary password must be changed at first sign-in."""
        key = username_key(username)
        # The display form is stored too: NFKC may make the key shorter than what was typed.
        if not key or max(len(key), len(username.strip())) > MAX_USERNAME_LENGTH:
            raise ValueError(f"username must be 1 to {MAX_USERNAME_LENGTH} characters")
        skeleton = confusable_skeleton(username)
        if len(skeleton) > 255:
            raise ValueError("username is too long once normalised")
        # The column sizes, checked here so that SQLite and PostgreSQL refuse the same input.
        for label, value, limit in (
            ("email", email, 254),
            ("first name", first_name, 100),
            ("last name", last_name, 100),
        ):
            if len(value.strip()) > limit:
                raise ValueError(f"{label} must be at most {limit} characters")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise ValueError(f"password must be at most {MAX_PASSWORD_LENGTH} characters long")
        if self.username_in_use(username):
            raise UsernameTaken(f"the username {username.strip()!r} is already in use")
        now = self.clock.now()
        account = Account(
            type=account_type,
            username=username.strip(),
            username_key=key,
            username_skeleton=skeleton,
            email=email.strip(),
            first_name=first_name.strip(),
            last_name=last_name.strip(),
            password_hash=self.hasher.hash(password),
            password_changed_at=None if temporary else now,
            must_change_password=temporary,
            status=status,
            # An operator's confirmed account vouches for its address; a registration does not yet.
            email_verified_at=now if status is AccountStatus.CONFIRMED else None,
            created_at=now,
        )
        self.session.add(account)
        self.session.flush()
        audit(self.session, "account.created", account_id=account.id, account_type=account_type.value)
        return account
