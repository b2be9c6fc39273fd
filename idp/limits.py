"""Per-IP rate limits (Flask-Limiter) on the lockout's Redis, falling back to process memory.

Apply the named limits to views::

    from idp.limits import limit_register

    @bp.route("/register", methods=["GET", "POST"])
    @limit_register
    def register(): ...

``limit_signin`` (POST /signin), ``limit_register`` (POST, shared by the registration pages),
``limit_recovery`` (POST, shared by the recovery pages: trouble, reset) and ``limit_token``
(/token) read ``IDP_RATE_LIMIT_*`` at request time. A breach answers 429 with ``Retry-After``:
an HTML page, or a JSON error on the API paths (idp/errors.py).

One ``Limiter`` serves every app of the process (its decorators are made at import); its
storage resolves the current app's counters, so that apps with other settings (tests) do
not share them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from flask import Flask, current_app, request
from flask.wrappers import Response
from flask_limiter import Limiter, RequestLimit
from limits.storage import MemoryStorage, RedisStorage, Storage
from redis.exceptions import RedisError

from idp import metrics
from idp.fallback import RedisHealth
from idp.runtime import runtime

T = TypeVar("T")
STORAGE_KEY = "idp.rate_limit_storage"


class FallbackRateLimitStorage:
    """One app's counters: Redis while it answers, this process's memory while it does not."""

    def __init__(self, primary: Storage | None, health: RedisHealth) -> None:
        self.primary = primary
        self.memory = MemoryStorage()
        self.health = health

    def _run(self, operation: Callable[[Storage], T]) -> T:
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


class AppRateLimitStorage(Storage):
    """The storage Flask-Limiter holds: each call goes to the current app's counters."""

    STORAGE_SCHEME = ["idp-app"]  # noqa: RUF012 (declared by limits' Storage)

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return RedisError

    @staticmethod
    def _current() -> FallbackRateLimitStorage:
        storage: FallbackRateLimitStorage = current_app.extensions[STORAGE_KEY]
        return storage

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self._current().incr(key, expiry, amount)

    def get(self, key: str) -> int:
        return self._current().get(key)

    def get_expiry(self, key: str) -> float:
        return self._current().get_expiry(key)

    def check(self) -> bool:
        return True  # failures never reach Flask-Limiter: the fallback answers instead

    def reset(self) -> int | None:
        return None

    def clear(self, key: str) -> None:
        self._current().clear(key)


def _client_address() -> str:
    # request.remote_addr is the client once ProxyFix (IDP_TRUSTED_PROXIES) has run.
    return request.remote_addr or "unknown"


def _answer_breach(limit: RequestLimit) -> Response:
    """Give the 429 its Retry-After; idp/errors.py renders the page or the JSON error."""
    metrics.RATE_LIMITED.inc(label_value=str(limit.request_args[-1]))
    retry_after = max(1, math.ceil(limit.window.reset_time - time.time()))
    return Response(status=429, headers={"Retry-After": str(retry_after)})


limiter = Limiter(
    key_func=_client_address,
    storage_uri="idp-app://",
    strategy="fixed-window",
    headers_enabled=False,
    swallow_errors=True,  # a limiter fault lets the request through rather than answering 500
    on_breach=_answer_breach,
)


def _rate(name: str) -> Callable[[], str]:
    def current() -> str:
        value: str = getattr(runtime().settings, f"rate_limit_{name}")
        return value

    return current


# The named limits other modules apply (see the module docstring).
limit_signin = limiter.limit(_rate("signin"), methods=["POST"])
limit_register = limiter.shared_limit(_rate("register"), scope="register", methods=["POST"])
limit_recovery = limiter.shared_limit(_rate("recovery"), scope="recovery", methods=["POST"])
limit_token = limiter.limit(_rate("token"))


def init_rate_limits(
    app: Flask, client: redis.Redis | None, health: RedisHealth, *, url: str, prefix: str
) -> None:
    """Give ``app`` its counters (on ``client``, or memory for ``memory://``) and the limiter."""
    primary = None
    if client is not None:
        # The lockout's connection pool: the same short timeouts, no second pool.
        primary = RedisStorage(url, connection_pool=client.connection_pool, key_prefix=f"{prefix}ratelimit")
    app.extensions[STORAGE_KEY] = FallbackRateLimitStorage(primary, health)
    limiter.init_app(app)
