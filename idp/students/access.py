"""Checking a student's Access ID and Access Password, with guessing throttled.

Two counters make enumerating students impractical while a stranger cannot block a family for
long: every check counts against the client's IP (``IDP_RATE_LIMIT_REGISTER``), and
``IDP_ACCESS_ID_FAILURES`` wrong passwords for one Access ID pause that Access ID for
``IDP_ACCESS_ID_PAUSE_SECONDS``, after which it may be tried again. Unknown Access IDs are counted
and paused alike, and cost one argon2 verification like a wrong password, so neither the answer,
nor the pause, nor the time taken tells whether an Access ID exists. A student without an Access
Password yet (a roster's new student) and, under the district's single-use option, a spent Access
Password are refused the same way, at the same cost.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select

from idp.accounts.passwords import MAX_PASSWORD_LENGTH, PasswordHasher
from idp.audit import audit
from idp.counters.store import CounterStore, Keys
from idp.db import DbSession
from idp.policy import AccessPolicy
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


def normalise_access_id(access_id: str) -> str:
    return access_id.strip()


class StudentAccess:
    def __init__(
        self,
        session: DbSession,
        *,
        hasher: PasswordHasher,
        counters: CounterStore,
        keys: Keys,
        policy: AccessPolicy,
        single_use: Callable[[], bool],
    ) -> None:
        self.session = session
        self.hasher = hasher
        self.counters = counters
        self.keys = keys
        self.policy = policy
        # The district's option "Access Passwords are single-use", read when a check needs it.
        self.single_use = single_use

    def access_id_key(self, access_id: str) -> str:
        """The counter of wrong Access Passwords for ``access_id``."""
        return self.keys.name("access:id", normalise_access_id(access_id).casefold())

    def address_key(self, ip_address: str | None) -> str:
        """The counter of Access ID checks from ``ip_address``."""
        return self.keys.name("access:ip", ip_address or "-")

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

        id_key = self.access_id_key(typed)
        # A paused Access ID is refused before anything is counted or hashed.
        paused_for = self.counters.locked_for(id_key)
        if paused_for is not None:
            failed("paused")
            raise AccessPaused(paused_for)
        # Every check counts against the address, right or wrong: guesses per address are bounded.
        from_address = self.counters.attempt(self.address_key(ip_address), self.policy.per_address)
        if not from_address.granted:
            failed("rate_limited")
            raise AccessRateLimited(from_address.locked_for or self.policy.per_address.lock)
        attempt = self.counters.attempt(id_key, self.policy.per_access_id)
        if not attempt.granted:  # paused by a concurrent attempt since the check above
            failed("paused")
            raise AccessPaused(attempt.locked_for or self.policy.per_access_id.lock)
        student = self._find(typed)
        password = access_password[:MAX_PASSWORD_LENGTH]
        reason = "credentials"
        if (
            student is None
            or not student.active
            or student.access_password_hash is None
            or len(access_password) > MAX_PASSWORD_LENGTH
        ):
            # Equal cost whether or not the Access ID exists: timing tells nothing.
            self.hasher.verify_dummy(password)
            student = None
        elif not self.hasher.verify(student.access_password_hash, password):
            student = None
        elif student.access_password_used_at is not None and self.single_use():
            student, reason = None, "spent"  # the next guardian needs a new letter
        if student is None:
            failed(reason, paused=attempt.locks)
            raise AccessDenied()
        self.counters.reset(id_key)
        return student

    def _find(self, access_id: str) -> Student | None:
        # NUL is in no Access ID, and PostgreSQL refuses it in a query parameter.
        if not access_id or len(access_id) > MAX_ACCESS_ID_LENGTH or "\x00" in access_id:
            return None
        return self.session.execute(
            select(Student).where(Student.access_id == access_id)
        ).scalar_one_or_none()
