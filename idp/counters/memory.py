"""Counters in this process: ``memory://``, for one development process (Redis's fallback is the
database). Time is the injected clock's, so tests move it instead of sleeping."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from idp.clock import Clock
from idp.counters.store import Attempt, Threshold, Window


@dataclass
class _Entry:
    count: int = 0
    count_ends: datetime | None = None
    locked_until: datetime | None = None

    def tidy(self, now: datetime) -> bool:
        """Drop what has ended; return whether anything is left."""
        if self.count_ends is not None and self.count_ends <= now:
            self.count, self.count_ends = 0, None
        if self.locked_until is not None and self.locked_until <= now:
            self.locked_until = None
        return self.count > 0 or self.locked_until is not None


class MemoryCounters:
    """The same counters as ``RedisCounters``, in a table this process alone sees.

    At most ``max_keys`` keys are kept: requests with ever new usernames or addresses must not
    grow the process without bound (ended entries go first, then the oldest).
    """

    def __init__(self, clock: Clock, max_keys: int = 100_000) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, now: datetime) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and not entry.tidy(now):
            del self._entries[key]
            return None
        return entry

    def _entry(self, key: str, now: datetime) -> _Entry:
        entry = self._live(key, now)
        if entry is None:
            if len(self._entries) >= self.max_keys:
                for stale in list(self._entries):
                    self._live(stale, now)
                while len(self._entries) >= self.max_keys:
                    del self._entries[next(iter(self._entries))]
            entry = self._entries[key] = _Entry()
        return entry

    def attempt(self, key: str, threshold: Threshold) -> Attempt:
        now = self.clock.now()
        with self._lock:
            entry = self._entry(key, now)
            if entry.locked_until is not None:
                return Attempt(granted=False, locked_for=entry.locked_until - now)
            if entry.count == 0:
                entry.count_ends = now + threshold.window
            entry.count += 1
            count = entry.count
            if count < threshold.limit:
                return Attempt(granted=True, count=count)
            entry.count, entry.count_ends = 0, None
            entry.locked_until = now + threshold.lock
            return Attempt(granted=True, count=count, locks=True)

    def locked_for(self, key: str) -> timedelta | None:
        now = self.clock.now()
        with self._lock:
            entry = self._live(key, now)
            return None if entry is None or entry.locked_until is None else entry.locked_until - now

    def window(self, key: str) -> Window:
        now = self.clock.now()
        with self._lock:
            entry = self._live(key, now)
            if entry is None or entry.count_ends is None:
                return Window(0, timedelta(0))
            return Window(entry.count, entry.count_ends - now)

    def reset(self, key: str) -> bool:
        now = self.clock.now()
        with self._lock:
            entry = self._live(key, now)
            self._entries.pop(key, None)
            return entry is not None and entry.locked_until is not None

    def increment(self, key: str, window: timedelta, amount: int = 1) -> Window:
        now = self.clock.now()
        with self._lock:
            entry = self._entry(key, now)
            if entry.count_ends is None:
                entry.count_ends = now + window
            entry.count += amount
            return Window(entry.count, entry.count_ends - now)
