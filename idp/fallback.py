"""Redis outages: when to fall back to per-process memory, when to try Redis again, what to log.

Shared by the lockout store and the rate limiter of one app (one per process), without Flask.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from idp import metrics

log = logging.getLogger("idp.redis")

RETRY_SECONDS = 1.0  # while Redis is down, one command tries it again this often
LOG_EVERY_SECONDS = 60.0  # an outage is logged when it starts, then at most this often


class RedisHealth:
    """Whether Redis answered lately; thread-safe."""

    def __init__(
        self,
        *,
        retry_seconds: float = RETRY_SECONDS,
        log_every_seconds: float = LOG_EVERY_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retry_seconds = retry_seconds
        self.log_every_seconds = log_every_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._next_try = 0.0
        self._last_log = 0.0
        self._failures_since_log = 0

    @property
    def fallback_active(self) -> bool:
        return self._down_since is not None

    def should_try(self) -> bool:
        """Return whether the next command should go to Redis (always, unless it failed lately)."""
        return self._down_since is None or self._monotonic() >= self._next_try

    def failed(self, error: Exception) -> None:
        """Record that a Redis command failed: fall back, and log once per interval."""
        metrics.REDIS_ERRORS.inc()
        now = self._monotonic()
        with self._lock:
            self._next_try = now + self.retry_seconds
            self._failures_since_log += 1
            if self._down_since is None:
                self._down_since = now
                self._last_log = now
                self._failures_since_log = 0
                log.warning(
                    "Redis is unavailable (%s); counting sign-in failures and rate limits in this "
                    "process until it answers again",
                    error,
                )
            elif now - self._last_log >= self.log_every_seconds:
                log.warning(
                    "Redis still unavailable after %.0f s (%d failed commands since the last report): %s",
                    now - self._down_since,
                    self._failures_since_log,
                    error,
                )
                self._last_log = now
                self._failures_since_log = 0

    def succeeded(self) -> None:
        """Record that Redis answered: use it again."""
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is None:
                return
            outage = self._monotonic() - self._down_since
            self._down_since = None
        log.warning("Redis answers again after %.1f s; counters are shared through it again", outage)


def make_room(table: dict[str, Any], max_keys: int, expire: Callable[[str], object]) -> None:
    """Keep an in-process stand-in for Redis under ``max_keys`` before a key is added.

    ``expire(key)`` drops the key if its entry has ended; if the table is still full, the oldest
    keys go. Requests with ever new usernames or addresses must not grow the process unbounded.
    """
    if len(table) < max_keys:
        return
    for key in list(table):
        expire(key)
    while len(table) >= max_keys:
        del table[next(iter(table))]
