"""What a counter store does, and the names of its keys."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from idp.tokens import keyed_hash


@dataclass(frozen=True)
class Threshold:
    """``limit`` attempts within ``window`` lock the key for ``lock``; the count starts again after."""

    limit: int
    window: timedelta
    lock: timedelta


@dataclass(frozen=True)
class Attempt:
    """What ``CounterStore.attempt`` decided for one attempt."""

    granted: bool
    count: int = 0  # attempts counted in the window, this one included
    locks: bool = False  # this attempt reached the limit: the key is locked from now on
    locked_for: timedelta | None = None  # when refused: the time left on the lock


@dataclass(frozen=True)
class Window:
    """A fixed window's count after an increment, and how long until it starts again."""

    count: int
    resets_in: timedelta


class CounterStore(Protocol):
    def attempt(self, key: str, threshold: Threshold) -> Attempt:
        """Atomically: refuse if ``key`` is locked; else count the attempt, locking at the limit."""
        ...

    def locked_for(self, key: str) -> timedelta | None:
        """Return the time left on the lock of ``key``, or None when it is not locked."""
        ...

    def window(self, key: str) -> Window:
        """Return what is counted for ``key`` now (attempts, or a fixed window's hits) and until when."""
        ...

    def reset(self, key: str) -> bool:
        """Forget the count and the lock of ``key``; return whether it was locked."""
        ...

    def increment(self, key: str, window: timedelta, amount: int = 1) -> Window:
        """Add ``amount`` to the fixed window of ``key``, which starts at its first hit."""
        ...


def whole_minutes(delta: timedelta) -> int:
    """Minutes left, rounded up, at least one: what people are told to wait."""
    return max(1, math.ceil(delta.total_seconds() / 60))


@dataclass(frozen=True)
class Keys:
    """Key names of one deployment: a prefix, and a server secret that keeps the values unreadable.

    A Redis dump must not give away the usernames or Access IDs tried (nor the passwords people
    type into the username field), so values are keyed hashes. The hash is a hash tag (``{…}``):
    a key and its lock land in the same slot of a Redis Cluster.
    """

    prefix: str
    secret: bytes

    @classmethod
    def derive(cls, prefix: str, secret_key: str) -> Keys:
        return cls(prefix, keyed_hash(secret_key.encode(), "idp.counter-keys").encode())

    def name(self, purpose: str, value: str) -> str:
        """Return the key counting ``value`` for ``purpose`` (``lockout:user``, ``access:ip`` …)."""
        return f"{self.prefix}{purpose}:{{{keyed_hash(self.secret, value)}}}"


def lock_key(key: str) -> str:
    """Return the key whose presence (and time to live) says that ``key`` is locked."""
    return f"{key}:locked"
