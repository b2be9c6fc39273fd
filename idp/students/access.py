"""Checking a student's Access ID and Access Password, with guessing throttled.

Two counters make enumerating students impractical while a stranger cannot block a family for
long: every check counts against the client's IP (``IDP_RATE_LIMIT_REGISTER``), and
``IDP_ACCESS_ID_FAILURES`` wrong passwords for one Access ID pause that Access ID for
``IDP_ACCESS_ID_PAUSE_SECONDS``, after which it may be tried again. Unknown Access IDs are counted
and paused alike, and cost one argon2 verification like a wrong password, so neither the answer,
nor the pause, nor the time taken tells whether an Access ID exists.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta

from limits import parse_many
from sqlalchemy import select

from idp.accounts.lockout import LockedOut, Lockout, LockoutKeys, LockoutStore
from idp.accounts.passwords import MAX_PASSWORD_LENGTH, PasswordHasher
from idp.audit import audit
from idp.config import Settings
from idp.db import DbSession
from idp.policy import LockoutPolicy
from idp.students.models import Student

MAX_ACCESS_ID_LENGTH = 64


class AccessDenied(Exception):
    """The Access ID or the Access Password is wrong; which one is never said."""


class AccessPaused(Exception):
    """Too many wrong Access Passwords for this Access ID lately."""

    def __init__(self, resets_in: timedelta) -> None:
        super().__init__(f"paused for {resets_in}")
        self.resets_in = resets_in


class AccessRateLimited(Exception):
    """Too many Access ID checks from this IP address lately."""

    def __init__(self, retry_after: timedelta) -> None:
        super().__init__(f"rate limited for {retry_after}")
        self.retry_after = retry_after


@dataclass(frozen=True)
class AccessPolicy:
    """The two throttles, as lockout policies over the sign-in lockout's store."""

    per_access_id: LockoutPolicy
    per_ip: LockoutPolicy

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        pause = timedelta(seconds=settings.access_id_pause_seconds)
        # IDP_RATE_LIMIT_REGISTER in Flask-Limiter syntax; its first limit counts the checks per IP.
        rate = parse_many(settings.rate_limit_register)[0]
        window = timedelta(seconds=rate.get_expiry())
        return cls(
            per_access_id=LockoutPolicy(threshold=settings.access_id_failures, duration=pause, window=pause),
            per_ip=LockoutPolicy(threshold=rate.amount, duration=window, window=window),
        )


def _digest(keys: LockoutKeys, value: str) -> str:
    # Keyed like the sign-in counters: a Redis dump does not give away the Access IDs tried.
    return hmac.new(keys.secret, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def access_id_key(keys: LockoutKeys, access_id: str) -> str:
    """Return the key counting wrong Access Passwords for ``access_id``."""
    return f"{keys.prefix}access:id:{_digest(keys, normalise_access_id(access_id).casefold())}"


def access_ip_key(keys: LockoutKeys, ip_address: str | None) -> str:
    """Return the key counting Access ID checks from ``ip_address``."""
    return f"{keys.prefix}access:ip:{_digest(keys, ip_address or '-')}"


def normalise_access_id(access_id: str) -> str:
    return access_id.strip()


# --- the check ----------------------------------------------------------------------------
class StudentAccess:
    def __init__(
        self,
        session: DbSession,
        *,
        hasher: PasswordHasher,
        store: LockoutStore,
        policy: AccessPolicy,
        keys: LockoutKeys,
    ) -> None:
        self.session = session
        self.hasher = hasher
        self.keys = keys
        self.per_access_id = Lockout(store, policy.per_access_id, keys)
        self.per_ip = Lockout(store, policy.per_ip, keys)

    def check(
        self, access_id: str, access_password: str, *, ip_address: str | None, account_id: str | None = None
    ) -> Student:
        """Return the student whose Access ID and Access Password these are; else raise."""
        typed = normalise_access_id(access_id)

        def failed(reason: str, paused: bool = False) -> None:
            # Every failed attempt is audited, with the Access ID tried (not its password).
            audit(
                self.session,
                "student_access.failed",
                account_id=account_id,
                ip_address=ip_address,
                access_id=typed[:MAX_ACCESS_ID_LENGTH],
                reason=reason,
                paused=paused,
            )

        id_key = access_id_key(self.keys, typed)
        try:
            # A paused Access ID is refused before anything is counted or hashed.
            self.per_access_id.check(id_key)
        except LockedOut as locked:
            failed("paused")
            raise AccessPaused(locked.resets_in) from None
        try:
            # Every check counts against the IP, right or wrong: guesses per address are bounded.
            self.per_ip.begin(access_ip_key(self.keys, ip_address))
        except LockedOut as locked:
            failed("rate_limited")
            raise AccessRateLimited(locked.resets_in) from None
        try:
            attempt = self.per_access_id.begin(id_key)
        except LockedOut as locked:  # paused by a concurrent attempt since the check above
            failed("paused")
            raise AccessPaused(locked.resets_in) from None
        student = self._find(typed)
        password = access_password[:MAX_PASSWORD_LENGTH]
        if student is None or not student.active or len(access_password) > MAX_PASSWORD_LENGTH:
            # Equal cost whether or not the Access ID exists: timing tells nothing.
            self.hasher.verify_dummy(password)
            student = None
        elif not self.hasher.verify(student.access_password_hash, password):
            student = None
        if student is None:
            paused = self.per_access_id.failed(attempt)
            failed("credentials", paused=paused)
            raise AccessDenied()
        self.per_access_id.succeeded(attempt)
        return student

    def _find(self, access_id: str) -> Student | None:
        # NUL is in no Access ID, and PostgreSQL refuses it in a query parameter.
        if not access_id or len(access_id) > MAX_ACCESS_ID_LENGTH or "\x00" in access_id:
            return None
        return self.session.execute(
            select(Student).where(Student.access_id == access_id)
        ).scalar_one_or_none()
