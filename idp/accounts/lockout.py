"""Failed sign-ins and lockout over the shared counters; no Flask here.

An attempt is counted when it starts, atomically with the lock check, and a success resets the
count: so of N concurrent wrong passwords exactly ``threshold`` reach argon2, whichever processes
they land on. The attempt that reaches the threshold locks the key for ``policy.duration`` (unless
it turns out right, which clears the lock) and clears the count, which starts again once the lock
expires. See docs/operations/lockout.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property

from idp.accounts.usernames import username_key
from idp.counters.store import Attempt, CounterStore, Keys, whole_minutes
from idp.policy import LockoutPolicy


class LockedOut(Exception):
    """Too many failed sign-ins for this username (or device): refused without a password check."""

    def __init__(self, resets_in: timedelta) -> None:
        super().__init__(f"locked for {resets_in}")
        self.resets_in = resets_in

    @property
    def minutes(self) -> int:
        """Return the minutes left, rounded up (at least 1)."""
        return whole_minutes(self.resets_in)


@dataclass(frozen=True)
class Started:
    """One password check the lockout let run; settle it with ``succeeded`` or ``failed``."""

    key: str
    attempt: Attempt


class Lockout:
    """The lockout rules over the counters: check, begin an attempt, settle it, unlock."""

    def __init__(
        self, counters: CounterStore, keys: Keys, policy: LockoutPolicy | Callable[[], LockoutPolicy]
    ) -> None:
        self.counters = counters
        self.keys = keys
        # The district's threshold and duration are data: read when an attempt needs them, not before.
        self._policy = policy

    @cached_property
    def policy(self) -> LockoutPolicy:
        return self._policy() if callable(self._policy) else self._policy

    def read_policy(self) -> LockoutPolicy:
        """Return the threshold and duration, read now and kept for this lockout's attempts."""
        return self.policy

    def user_key(self, username: str) -> str:
        """The counter of ``username``: case, width and surrounding spaces do not matter."""
        return self.keys.name("lockout:user", username_key(username))

    def device_key(self, account_id: str, device_id: str) -> str:
        """The counter of one trusted browser of one account."""
        return self.keys.name("lockout:device", f"{account_id}\x00{device_id}")

    def check(self, key: str) -> None:
        """Raise ``LockedOut`` if ``key`` is locked (a read only: nothing is counted)."""
        left = self.counters.locked_for(key)
        if left is not None:
            raise LockedOut(resets_in=left)

    def is_locked(self, key: str) -> bool:
        return self.counters.locked_for(key) is not None

    def begin(self, key: str) -> Started:
        """Count an attempt on ``key`` before its password check; raise ``LockedOut`` if locked."""
        attempt = self.counters.attempt(key, self.policy.attempts)
        if not attempt.granted:
            raise LockedOut(resets_in=attempt.locked_for or self.policy.duration)
        return Started(key, attempt)

    def succeeded(self, started: Started) -> None:
        """A right password: the count (and a lock this attempt set) start again from zero."""
        self.counters.reset(started.key)

    def failed(self, started: Started) -> bool:
        """A wrong password (already counted): return whether it locked the key."""
        return started.attempt.locks

    def unlock_username(self, username: str) -> bool:
        """Lift the lock of ``username`` and forget its failures; return whether it was locked."""
        return self.counters.reset(self.user_key(username))

    def failures(self, username: str) -> int:
        return self.counters.window(self.user_key(username)).count
