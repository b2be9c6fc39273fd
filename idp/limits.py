"""Per-IP rate limits on the lockout's Redis, falling back to process memory.

Apply the named limits to views::

    from idp.limits import limit_register

    @bp.route("/register", methods=["GET", "POST"])
    @limit_register
    def register(): ...

``limit_signin`` (POST, each page its own counter: /signin, /signin/change-password),
``limit_register`` (POST, shared by the registration pages), ``limit_recovery`` (POST, shared by
the recovery pages: trouble, reset) and ``limit_token`` (/token) read ``IDP_RATE_LIMIT_*`` at
request time (the ``limits`` syntax Flask-Limiter uses: ``100/minute``, ``10/second;500/hour``).
A breach answers 429 with ``Retry-After``: an HTML page, or a JSON error on the API paths
(idp/errors.py).

Fixed windows of the ``limits`` library, counted per client address under the keys Flask-Limiter
used (``<prefix>ratelimit:LIMITER/<address>/<scope>/…``). The check is one counter increment:
Flask-Limiter's per-request machinery (limit resolution, meta limits, a before-request hook on
every request) cost a token request a third of a millisecond for the same increment
(docs/performance.md).
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import redis
from flask import Flask, current_app, request
from limits import RateLimitItem, parse_many
from limits.storage import RedisStorage
from redis.exceptions import RedisError
from werkzeug.exceptions import TooManyRequests

from idp import metrics
from idp.fallback import RedisHealth, make_room
from idp.runtime import runtime

T = TypeVar("T")
View = TypeVar("View", bound=Callable[..., Any])
STORAGE_KEY = "idp.rate_limit_storage"


class Counters(Protocol):
    """The part of a ``limits`` storage the checks use (``RedisStorage`` is one)."""

    def incr(self, key: str, expiry: int, amount: int = 1) -> int: ...

    def get(self, key: str) -> int: ...

    def get_expiry(self, key: str) -> float: ...

    def clear(self, key: str) -> None: ...


class MemoryCounters:
    """Fixed-window counters in this process: ``memory://``, and the fallback while Redis is down.

    Expired windows are dropped when next touched, and swept when the table is full. ``limits``'
    own ``MemoryStorage`` starts a timer thread for its sweep on nearly every increment: a thread
    per sign-in POST, which cost a fifth of a millisecond there (docs/performance.md).
    """

    def __init__(self, clock: Callable[[], float] = time.time, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._max_keys = max_keys
        # key -> [count, the window's end as a Unix time]
        self._windows: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = self._clock()
        with self._lock:
            window = self._live(key, now)
            if window is None:
                make_room(self._windows, self._max_keys, lambda stale: self._live(stale, now))
                window = self._windows[key] = [0, now + expiry]
            window[0] += amount
            return int(window[0])

    def get(self, key: str) -> int:
        with self._lock:
            window = self._live(key, self._clock())
            return int(window[0]) if window is not None else 0

    def get_expiry(self, key: str) -> float:
        now = self._clock()
        with self._lock:
            window = self._live(key, now)
            return window[1] if window is not None else now

    def clear(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)

    def _live(self, key: str, now: float) -> list[float] | None:
        window = self._windows.get(key)
        if window is not None and window[1] <= now:
            del self._windows[key]
            return None
        return window


class FallbackRateLimitStorage:
    """One app's counters: Redis while it answers, this process's memory while it does not."""

    def __init__(self, primary: Counters | None, health: RedisHealth) -> None:
        self.primary = primary
        self.memory = MemoryCounters()
        self.health = health

    def _run(self, operation: Callable[[Counters], T]) -> T:
        if self.primary is not None and self.health.should_try():
            try:
                result = operation(self.primary)
            except RedisError as error:
                self.health.failed(error)
            else:
                self.health.succeeded()
                return result
        return operation(self.memory)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self._run(lambda s: s.incr(key, expiry, amount))

    def get(self, key: str) -> int:
        return self._run(lambda s: s.get(key))

    def get_expiry(self, key: str) -> float:
        return self._run(lambda s: s.get_expiry(key))

    def clear(self, key: str) -> None:
        self._run(lambda s: s.clear(key))


def _client_address() -> str:
    # request.remote_addr is the client once ProxyFix (IDP_TRUSTED_PROXIES) has run.
    return request.remote_addr or "unknown"


@functools.lru_cache(maxsize=32)
def _parsed(rate: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(rate))


def check_rate_limit(setting: str, scope: str) -> None:
    """Count this request against ``IDP_RATE_LIMIT_<SETTING>`` for its address; raise 429 beyond it."""
    storage: FallbackRateLimitStorage = current_app.extensions[STORAGE_KEY]
    rate: str = getattr(runtime().settings, f"rate_limit_{setting}")
    address = _client_address()
    for limit in _parsed(rate):
        key = limit.key_for(address, scope)
        if storage.incr(key, limit.get_expiry()) > limit.amount:
            metrics.RATE_LIMITED.inc(label_value=scope)
            retry_after = max(1, math.ceil(storage.get_expiry(key) - time.time()))
            raise TooManyRequests(retry_after=retry_after)


def rate_limited(
    setting: str, *, scope: str | None = None, methods: tuple[str, ...] | None = None
) -> Callable[[View], View]:
    """Limit a view by ``IDP_RATE_LIMIT_<SETTING>``, for ``methods`` (all by default).

    ``scope`` names a counter views share; by default each endpoint counts on its own.
    """

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def limited(*args: Any, **kwargs: Any) -> Any:
            if methods is None or request.method in methods:
                check_rate_limit(setting, scope or request.endpoint or view.__name__)
            return view(*args, **kwargs)

        return limited  # type: ignore[return-value]

    return decorate


# The named limits other modules apply (see the module docstring).
limit_signin = rate_limited("signin", methods=("POST",))
limit_register = rate_limited("register", scope="register", methods=("POST",))
limit_recovery = rate_limited("recovery", scope="recovery", methods=("POST",))
limit_token = rate_limited("token")


def init_rate_limits(
    app: Flask, client: redis.Redis | None, health: RedisHealth, *, url: str, prefix: str
) -> None:
    """Give ``app`` its counters (on ``client``, or memory for ``memory://``)."""
    primary = None
    if client is not None:
        # The lockout's connection pool: the same short timeouts, no second pool.
        primary = RedisStorage(url, connection_pool=client.connection_pool, key_prefix=f"{prefix}ratelimit")
    app.extensions[STORAGE_KEY] = FallbackRateLimitStorage(primary, health)
