"""Redis outages: the database's counters stand in while Redis does not answer, then Redis again."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from prometheus_client import Counter
from redis.exceptions import RedisError

from idp.counters.store import Attempt, CounterStore, Threshold, Window
from idp.metrics import REDIS_FALLBACK_ACTIVE

log = logging.getLogger("idp.redis")
T = TypeVar("T")

REDIS_ERRORS = Counter("idp_redis_errors", "Redis commands that failed and fell back to the database.")

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
        REDIS_ERRORS.inc()
        now = self._monotonic()
        with self._lock:
            self._next_try = now + self.retry_seconds
            self._failures_since_log += 1
            if self._down_since is None:
                self._down_since = now
                REDIS_FALLBACK_ACTIVE.set(1)
                self._last_log = now
                self._failures_since_log = 0
                log.warning(
                    "Redis is unavailable (%s); counting sign-in failures and rate limits in the "
                    "database until it answers again",
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
            REDIS_FALLBACK_ACTIVE.set(0)
        log.warning("Redis answers again after %.1f s; counters are shared through it again", outage)


class FallbackCounters:
    """``primary`` (Redis) while it answers; ``fallback`` (the database) while it does not."""

    def __init__(self, primary: CounterStore, fallback: CounterStore, health: RedisHealth) -> None:
        self.primary = primary
        self.fallback = fallback
        self.health = health

    def _run(self, operation: Callable[[CounterStore], T]) -> T:
        if self.health.should_try():
            try:
                result = operation(self.primary)
            except RedisError as error:
                self.health.failed(error)
            else:
                self.health.succeeded()
                return result
        return operation(self.fallback)

    def attempt(self, key: str, threshold: Threshold) -> Attempt:
        return self._run(lambda store: store.attempt(key, threshold))

    def locked_for(self, key: str) -> timedelta | None:
        return self._run(lambda store: store.locked_for(key))

    def window(self, key: str) -> Window:
        return self._run(lambda store: store.window(key))

    def reset(self, key: str) -> bool:
        return self._run(lambda store: store.reset(key))

    def increment(self, key: str, window: timedelta, amount: int = 1) -> Window:
        return self._run(lambda store: store.increment(key, window, amount))
