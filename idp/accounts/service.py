"""Accounts: finding them, checking their passwords under the lockout, creating them; no HTTP."""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import case, func, select

from idp.accounts import legacy_hashes
from idp.accounts.devices import TrustedDevice
from idp.accounts.lockout import LockedOut, Lockout, Started
from idp.accounts.models import Account, AccountStatus, AccountType
from idp.accounts.password_policy import ChangeReason, PasswordPolicyService
from idp.accounts.passwords import MAX_PASSWORD_LENGTH, PasswordHasher
from idp.accounts.skeleton import confusable_skeleton
from idp.accounts.user_agents import device_name
from idp.accounts.usernames import MAX_USERNAME_LENGTH, username_key
from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession
from idp.metrics import LOCKOUTS, SIGNIN_FAILURES, SIGNIN_LOCKED

# Accounts one email address may name at sign-in; the password decides among them.
MAX_CANDIDATES = 5
# Who signs in at /signin (portals); staff sign in at /admin/signin only.
PORTAL_ACCOUNT_TYPES = (AccountType.PARENT, AccountType.STUDENT)


@dataclass(frozen=True)
class Subject:
    """A counter a sign-in attempt counts against, and the candidate account it covers (None:
    the typed identifier itself)."""

    key: str
    via: str  # "username" or "device"
    account: Account | None


class InvalidCredentials(Exception):
    """Unknown username or wrong password: the two are never told apart."""


class AccountDisabled(Exception):
    pass


class AccountExpired(Exception):
    pass


class TemporaryPasswordExpired(Exception):
    """The right temporary password, past its end: only the school can give a new one."""


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
    # The portal whose authorization request the sign-in is for, if any.
    client_id: str | None = None

    def audited(self) -> dict[str, Any]:
        """What every audit event of this sign-in says about where it came from."""
        return {"client_id": self.client_id, "ip_address": self.ip_address, "user_agent": self.user_agent}


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

    def candidates(self, identifier: str) -> list[Account]:
        """The accounts a sign-in identifier names, at most ``MAX_CANDIDATES``: the username's
        first, then, for what looks like an address, the accounts with that email, oldest first."""
        # NUL is in no identifier, and PostgreSQL refuses it in a query parameter (an error, not a miss).
        if len(identifier) > MAX_USERNAME_LENGTH * 4 or "\x00" in identifier:
            return []
        key = username_key(identifier)
        if "@" not in identifier:
            found = self.session.execute(
                select(Account).where(Account.username_key == key)
            ).scalar_one_or_none()
            return [found] if found is not None else []
        address = identifier.strip().lower()
        by_username = Account.username_key == key
        statement = (
            select(Account)
            .where(by_username | (func.lower(Account.email) == address))
            .order_by(case((by_username, 0), else_=1), Account.created_at, Account.id)
            .limit(MAX_CANDIDATES)
        )
        return list(self.session.execute(statement).scalars())

    def authenticate(
        self,
        identifier: str,
        password: str,
        context: SignInContext,
        *,
        account_types: Collection[AccountType] = PORTAL_ACCOUNT_TYPES,
    ) -> Account:
        """Return the account if ``password`` is right and it may sign in; else raise why not.

        ``identifier`` is a username or an email address; where one address names several
        accounts, the password decides among them (``candidates``). Accounts of other types than
        ``account_types`` are left out, so they are refused exactly as an unknown username is:
        staff never sign in to portals, and parents never to the console.
        The accounts are read, then the connection goes back to the pool before argon2: a slow
        hash, or a connection dropped meanwhile, holds nobody else's. What follows (the audit of
        the outcome, the records of ``SignInService``) is a new short transaction.
        """
        candidates = self.candidates(identifier) if len(password) <= MAX_PASSWORD_LENGTH else []
        candidates = [candidate for candidate in candidates if candidate.type in account_types]
        if self.lockout is not None:
            # The district's lockout options are data: read them in this transaction, not beside argon2.
            self.lockout.read_policy()
        self.session.commit()
        account = self._guarded_check(identifier, candidates, password, context)
        if account is None:
            SIGNIN_FAILURES.inc()
            named: list[str | None] = [candidate.id for candidate in candidates]
            for account_id in named or [None]:
                audit(
                    self.session,
                    "signin.failed",
                    account_id=account_id,
                    reason="credentials",
                    **context.audited(),
                )
            raise InvalidCredentials()
        if account.status is AccountStatus.DISABLED:
            audit(
                self.session, "signin.refused", account_id=account.id, reason="disabled", **context.audited()
            )
            raise AccountDisabled()
        if account.has_expired(self.clock.now()):
            audit(
                self.session, "signin.refused", account_id=account.id, reason="expired", **context.audited()
            )
            raise AccountExpired()
        if account.temporary_password_expired(self.clock.now()):
            audit(
                self.session,
                "signin.refused",
                account_id=account.id,
                reason="temporary_password_expired",
                **context.audited(),
            )
            raise TemporaryPasswordExpired()
        if legacy_hashes.is_legacy(account.password_scheme):
            self._upgrade_legacy(account, password)
        elif self.hasher.needs_rehash(account.password_hash):
            account.password_hash = self.hasher.hash(password)
            audit(self.session, "password_hash.upgraded", account_id=account.id)
        reason = self.policies.change_due(account) if self.policies is not None else None
        if reason is not None:
            audit(
                self.session,
                "signin.password_change_required",
                account_id=account.id,
                reason=reason.value,
                **context.audited(),
            )
            raise PasswordChangeRequired(account, reason)
        return account

    def record_signin(self, account: Account, context: SignInContext) -> None:
        """Count a completed sign-in: the previous one's time and device become claims (``last_login_*``)."""
        account.last_login_at, account.last_login_ip = account.current_login_at, account.current_login_ip
        account.current_login_at, account.current_login_ip = self.clock.now(), context.ip_address
        account.last_login_device = account.current_login_device
        account.current_login_device = device_name(context.user_agent).summary
        account.login_count += 1
        audit(self.session, "signin.succeeded", account_id=account.id, **context.audited())

    def verify_password(self, account: Account, password: str, context: SignInContext) -> None:
        """Check ``account``'s current password (the change-password page) under the sign-in lockout.

        A wrong password counts as a failed sign-in of the account's username; raise
        ``InvalidCredentials``, ``LockedOut`` or ``HashingBusy``.
        """
        # No device is trusted here: a signed-in browser has one budget, the username's, whatever
        # device cookies it holds (the device cookie is for the sign-in page).
        untrusting = replace(context, devices=())
        if len(password) > MAX_PASSWORD_LENGTH or not self._guarded_check(
            account.username, [account], password, untrusting
        ):
            SIGNIN_FAILURES.inc()
            audit(
                self.session,
                "password_check.failed",
                account_id=account.id,
                **context.audited(),
            )
            raise InvalidCredentials()

    def _guarded_check(
        self, identifier: str, candidates: list[Account], password: str, context: SignInContext
    ) -> Account | None:
        """Verify the password against the candidates the lockout lets through, each attempt
        counted first; return the first candidate it is right for, if any.

        The attempt counts against the typed identifier and against each candidate (its username,
        or the browser's device where the device cookie vouches for it), so that switching
        between username and email gains no guesses. A locked candidate is not verified; with
        none left, or the identifier locked, the sign-in is refused without a password check,
        and where the others do not match either, it is refused as locked too (the password may
        well be the locked one's).
        """
        if self.lockout is None:
            with self._hashing_slot():
                return self._verify(candidates, password)
        subjects = self._lockout_subjects(identifier, candidates, context)
        try:
            # Locks are read first so that a locked identifier never waits for an argon2 slot.
            for subject in subjects:
                if subject.account is None or len(subjects) == 1:
                    self.lockout.check(subject.key)
            with self._hashing_slot():
                started, locked = self._begin(subjects)
                matched = self._verify(
                    [subject.account for subject, _ in started if subject.account], password
                )
            for subject, attempt in started:
                if matched is not None and subject.account in (None, matched):
                    self.lockout.succeeded(attempt)
                elif matched is None and self.lockout.failed(attempt):
                    self._record_lock(attempt, subject.via, subject.account, context)
            if matched is None and locked is not None:
                raise locked
        except LockedOut:
            SIGNIN_LOCKED.inc()
            audit(
                self.session,
                "signin.refused",
                account_id=candidates[0].id if len(candidates) == 1 else None,
                reason="locked",
                **context.audited(),
            )
            raise
        return matched

    def _lockout_subjects(
        self, identifier: str, candidates: list[Account], context: SignInContext
    ) -> list[Subject]:
        """The counters an attempt counts against: each candidate's (its username's, or the
        browser's device if trusted for it) and the typed identifier's, once each."""
        assert self.lockout is not None
        subjects: list[Subject] = []
        for account in candidates:
            subjects.append(
                self._device_subject(account, context)
                or Subject(self.lockout.user_key(account.username), "username", account)
            )
        typed = self.lockout.user_key(identifier)
        # Not where every candidate is counted by its device: the device cookie keeps its browser
        # signing in while a stranger hammers the username (or the address).
        if all(subject.via == "username" for subject in subjects) and typed not in {s.key for s in subjects}:
            subjects.insert(0, Subject(typed, "username", None))
        return subjects

    def _device_subject(self, account: Account, context: SignInContext) -> Subject | None:
        assert self.lockout is not None
        for device in context.devices:
            if device.account_id == account.id:
                key = self.lockout.device_key(account.id, device.device_id)
                # A device that failed too often is trusted no more: it counts as any browser.
                return None if self.lockout.is_locked(key) else Subject(key, "device", account)
        return None

    def _begin(self, subjects: list[Subject]) -> tuple[list[tuple[Subject, Started]], LockedOut | None]:
        """Count the attempt on every subject that is not locked; return those, and the lock of a
        candidate left out (it is not verified). Raise ``LockedOut`` if the identifier, or every
        candidate, is locked."""
        assert self.lockout is not None
        started: list[tuple[Subject, Started]] = []
        refused: LockedOut | None = None
        for subject in subjects:
            try:
                started.append((subject, self.lockout.begin(subject.key)))
            except LockedOut as locked:
                if subject.account is None:
                    raise
                refused = locked
        if refused is not None and not any(subject.account for subject, _ in started):
            raise refused
        return started, refused

    def _record_lock(
        self, started: Started, via: str, account: Account | None, context: SignInContext
    ) -> None:
        assert self.lockout is not None
        LOCKOUTS.labels(scope=via).inc()
        audit(
            self.session,
            "account.locked" if via == "username" else "device.locked",
            account_id=account.id if account is not None else None,
            failures=started.attempt.count,
            seconds=int(self.lockout.policy.duration.total_seconds()),
            **context.audited(),
        )

    def _verify(self, candidates: list[Account], password: str) -> Account | None:
        """Return the first candidate ``password`` is right for; every one is verified, so the
        time says nothing about which. With none, one verify of a placeholder: an unknown
        identifier costs what a known one does."""
        if not candidates:
            self.hasher.verify_dummy(password[:MAX_PASSWORD_LENGTH])
            return None
        matches = [self._matches(account, password) for account in candidates]
        return next((account for account, right in zip(candidates, matches, strict=True) if right), None)

    def _matches(self, account: Account, password: str) -> bool:
        if not legacy_hashes.is_legacy(account.password_scheme):
            return self.hasher.verify(account.password_hash, password)
        # An imported hash (idp accounts import) costs one argon2 run besides its own check, so that
        # a wrong password takes no less time than a modern account's: the time tells no one which.
        self.hasher.verify_dummy(password)
        return legacy_hashes.verify(
            account.password_scheme, account.password_hash, account.legacy_salt, password
        )

    def _upgrade_legacy(self, account: Account, password: str) -> None:
        """Re-hash an imported password with argon2id and delete the old hash, in this transaction.

        A district's reset passwords ("welcome", "changeme") must then be changed before the sign-in
        completes, as the old portal asked.
        """
        scheme = account.password_scheme
        account.password_hash = self.hasher.hash(password)
        account.password_scheme = legacy_hashes.MODERN_SCHEME
        account.legacy_salt = None
        if legacy_hashes.is_default_password(password):
            account.must_change_password = True
        audit(self.session, "account.password_upgraded", account_id=account.id, scheme=scheme)

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
            temporary_password_expires_at=(
                self.policies.temporary_until() if temporary and self.policies is not None else None
            ),
            status=status,
            # An operator's confirmed account vouches for its address; a registration does not yet.
            email_verified_at=now if status is AccountStatus.CONFIRMED else None,
            created_at=now,
        )
        self.session.add(account)
        self.session.flush()
        audit(self.session, "account.created", account_id=account.id, account_type=account_type.value)
        return account
