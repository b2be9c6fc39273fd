"""Failed sign-in counters and lockout, shared by every process through Redis; no Flask here.

An attempt is counted when it starts, atomically with the lock check (one Lua script), and a
success resets the count: so of N concurrent wrong passwords exactly ``threshold`` reach argon2,
whichever processes they land on. The attempt that reaches the threshold locks the key for
``policy.duration`` (unless it turns out right, which clears the lock) and clears the count,
which starts again once the lock expires. See docs/operations/lockout.md.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, TypeVar

import redis
from redis.exceptions import RedisError

from idp.accounts.usernames import username_key
from idp.fallback import RedisHealth, make_room
from idp.policy import LockoutPolicy

T = TypeVar("T")
DEFAULT_PREFIX = "idp:"


class LockedOut(Exception):
    """Too many failed sign-ins for this username (or device): refused without a password check."""

    def __init__(self, resets_in: timedelta) -> None:
        super().__init__(f"locked for {resets_in}")
        self.resets_in = resets_in

    @property
    def minutes(self) -> int:
        """Return the minutes left, rounded up (at least 1)."""
        return max(1, math.ceil(self.resets_in.total_seconds() / 60))


# --- keys ---------------------------------------------------------------------------------
def _digest(secret: bytes, value: str) -> str:
    # HMAC rather than a bare SHA-256: a Redis dump must not give away the usernames tried
    # (nor the passwords people type into the username field), which a dictionary would.
    return hmac.new(secret, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def lockout_key(username: str, *, prefix: str = DEFAULT_PREFIX, secret: bytes = b"") -> str:
    """Return the counter key of ``username``: case, width and surrounding spaces do not matter."""
    return f"{prefix}lockout:user:{_digest(secret, username_key(username))}"


def device_key(account_id: str, device_id: str, *, prefix: str = DEFAULT_PREFIX, secret: bytes = b"") -> str:
    """Return the counter key of one trusted browser of one account."""
    return f"{prefix}lockout:device:{_digest(secret, account_id + chr(0) + device_id)}"


def lock_key(key: str) -> str:
    """Return the key whose presence (and TTL) says that ``key`` is locked."""
    return f"{key}:locked"


@dataclass(frozen=True)
class LockoutKeys:
    """The key functions bound to one deployment's prefix and secret."""

    prefix: str = DEFAULT_PREFIX
    secret: bytes = b""

    @classmethod
    def derive(cls, prefix: str, secret_key: str) -> LockoutKeys:
        return cls(prefix, hmac.new(secret_key.encode(), b"idp.lockout-keys", hashlib.sha256).digest())

    def user(self, username: str) -> str:
        return lockout_key(username, prefix=self.prefix, secret=self.secret)

    def device(self, account_id: str, device_id: str) -> str:
        return device_key(account_id, device_id, prefix=self.prefix, secret=self.secret)


# --- stores -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttemptStart:
    """What ``LockoutStore.begin`` decided for one attempt."""

    granted: bool
    count: int = 0  # attempts counted in the window, this one included
    locks: bool = False  # this attempt reached the threshold: the key is locked unless it succeeds
    locked_for: timedelta | None = None  # when refused: the time left on the lock


class LockoutStore(Protocol):
    def locked_for(self, key: str, policy: LockoutPolicy) -> timedelta | None:
        """Return the time left on the lock of ``key``, or None when it is not locked."""
        ...

    def begin(self, key: str, policy: LockoutPolicy) -> AttemptStart:
        """Atomically: refuse if locked; else count the attempt, locking at the threshold."""
        ...

    def reset(self, key: str) -> None:
        """Forget the count and the lock of ``key`` (a success)."""
        ...

    def unlock(self, key: str) -> bool:
        """Forget the count and the lock; return whether there was a lock."""
        ...

    def count(self, key: str) -> int:
        """Return the attempts counted for ``key`` in its window."""
        ...


# KEYS[1] the counter, KEYS[2] the lock; ARGV threshold, window (ms), lock duration (ms).
# Returns {granted (0|1), count, locks (0|1), lock ms left}.
BEGIN_SCRIPT = """
local left = redis.call('PTTL', KEYS[2])
if left ~= -2 then
  if left < 0 then left = tonumber(ARGV[3]) end
  return {0, 0, 0, left}
end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], n, 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return {1, n, 1, tonumber(ARGV[3])}
end
return {1, n, 0, 0}
"""


def _ms(delta: timedelta) -> int:
    return max(1, int(delta.total_seconds() * 1000))


class RedisLockoutStore:
    """Counters in Redis: every process and host sees the same count."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._begin = client.register_script(BEGIN_SCRIPT)

    def locked_for(self, key: str, policy: LockoutPolicy) -> timedelta | None:
        left = int(self.client.pttl(lock_key(key)))
        if left == -2:
            return None
        return timedelta(milliseconds=left) if left >= 0 else policy.duration

    def begin(self, key: str, policy: LockoutPolicy) -> AttemptStart:
        args = (policy.threshold, _ms(policy.window), _ms(policy.duration))
        granted, count, locks, left = (int(x) for x in self._begin(keys=[key, lock_key(key)], args=args))
        if not granted:
            return AttemptStart(granted=False, locked_for=timedelta(milliseconds=left))
        return AttemptStart(granted=True, count=count, locks=bool(locks))

    def reset(self, key: str) -> None:
        self.client.delete(key, lock_key(key))

    def unlock(self, key: str) -> bool:
        had_lock = bool(self.client.delete(lock_key(key)))
        self.client.delete(key)
        return had_lock

    def count(self, key: str) -> int:
        value = self.client.get(key)
        return int(value) if value is not None else 0


@dataclass
class _Entry:
    count: int = 0
    count_expires: float = 0.0
    locked_until: float = 0.0


class MemoryLockoutStore:
    """Counters in this process only: ``memory://`` in development, and the fallback when Redis is down."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self._monotonic = monotonic
        self._max_keys = max_keys
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.count and entry.count_expires <= now:
            entry.count = 0
        if not entry.count and entry.locked_until <= now:
            del self._entries[key]
            return None
        return entry

    def locked_for(self, key: str, policy: LockoutPolicy) -> timedelta | None:
        now = self._monotonic()
        with self._lock:
            entry = self._live(key, now)
            if entry is None or entry.locked_until <= now:
                return None
            return timedelta(seconds=entry.locked_until - now)

    def begin(self, key: str, policy: LockoutPolicy) -> AttemptStart:
        now = self._monotonic()
        with self._lock:
            entry = self._live(key, now)
            if entry is not None and entry.locked_until > now:
                return AttemptStart(granted=False, locked_for=timedelta(seconds=entry.locked_until - now))
            if entry is None:
                make_room(self._entries, self._max_keys, lambda stale: self._live(stale, now))
                entry = self._entries[key] = _Entry()
            if entry.count == 0:
                entry.count_expires = now + policy.window.total_seconds()
            entry.count += 1
            count = entry.count
            if count >= policy.threshold:
                entry.count = 0
                entry.locked_until = now + policy.duration.total_seconds()
                return AttemptStart(granted=True, count=count, locks=True)
            return AttemptStart(granted=True, count=count)

    def reset(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def unlock(self, key: str) -> bool:
        now = self._monotonic()
        with self._lock:
            entry = self._entries.pop(key, None)
            return entry is not None and entry.locked_until > now

    def count(self, key: str) -> int:
        with self._lock:
            entry = self._live(key, self._monotonic())
            return entry.count if entry is not None else 0


class FallbackLockoutStore:
    """Redis while it answers; this process's memory while it does not, then Redis again."""

    def __init__(self, primary: LockoutStore, fallback: LockoutStore, health: RedisHealth) -> None:
        self.primary = primary
        self.fallback = fallback
        self.health = health

    def _run(self, on_primary: Callable[[LockoutStore], T]) -> T:
        if self.health.should_try():
            try:
                result = on_primary(self.primary)
            except RedisError as error:
                self.health.failed(error)
            else:
                self.health.succeeded()
                return result
        return on_primary(self.fallback)

    def locked_for(self, key: str, policy: LockoutPolicy) -> timedelta | None:
        return self._run(lambda store: store.locked_for(key, policy))

    def begin(self, key: str, policy: LockoutPolicy) -> AttemptStart:
        return self._run(lambda store: store.begin(key, policy))

    def reset(self, key: str) -> None:
        self._run(lambda store: store.reset(key))

    def unlock(self, key: str) -> bool:
        return self._run(lambda store: store.unlock(key))

    def count(self, key: str) -> int:
        return self._run(lambda store: store.count(key))


# --- the rules ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Attempt:
    """One password check that was allowed to run; settle it with ``succeeded`` or ``failed``."""

    key: str
    start: AttemptStart


class Lockout:
    """The lockout rules over a store: check, begin an attempt, settle it, unlock."""

    def __init__(self, store: LockoutStore, policy: LockoutPolicy, keys: LockoutKeys | None = None) -> None:
        self.store = store
        self.policy = policy
        self.keys = keys or LockoutKeys()

    def check(self, key: str) -> None:
        """Raise ``LockedOut`` if ``key`` is locked (a read only: nothing is counted)."""
        left = self.store.locked_for(key, self.policy)
        if left is not None:
            raise LockedOut(resets_in=left)

    def is_locked(self, key: str) -> bool:
        return self.store.locked_for(key, self.policy) is not None

    def begin(self, key: str) -> Attempt:
        """Count an attempt on ``key`` before its password check; raise ``LockedOut`` if locked."""
        start = self.store.begin(key, self.policy)
        if not start.granted:
            raise LockedOut(resets_in=start.locked_for or self.policy.duration)
        return Attempt(key, start)

    def succeeded(self, attempt: Attempt) -> None:
        """A right password: the count (and a lock this attempt set) start again from zero."""
        self.store.reset(attempt.key)

    def failed(self, attempt: Attempt) -> bool:
        """A wrong password (already counted): return whether it locked the key."""
        return attempt.start.locks

    def unlock_username(self, username: str) -> bool:
        """Lift the lock of ``username`` and forget its failures; return whether it was locked."""
        return self.store.unlock(self.keys.user(username))

    def failures(self, username: str) -> int:
        return self.store.count(self.keys.user(username))
