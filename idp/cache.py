"""Redis: counters and caches that may be lost. ``memory://`` means none (one process only)."""

from __future__ import annotations

import redis
from flask import Flask, current_app
from redis.backoff import NoBackoff
from redis.retry import Retry

from idp.accounts.lockout import (
    FallbackLockoutStore,
    Lockout,
    LockoutKeys,
    MemoryLockoutStore,
    RedisLockoutStore,
)
from idp.fallback import RedisHealth
from idp.limits import init_rate_limits
from idp.policy import LockoutPolicy
from idp.runtime import EXTENSION_KEY

REDIS_KEY = "idp.redis"
HEALTH_KEY = "idp.redis_health"


def init_redis(app: Flask) -> None:
    url = app.extensions[EXTENSION_KEY].settings.redis_url
    client = None
    if not url.startswith("memory://"):
        # Short timeouts: a Redis outage must slow no request by more than a moment.
        # No retries either: a failed command falls back to memory at once (idp.fallback).
        client = redis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
        )
    app.extensions[REDIS_KEY] = client
    init_counters(app, client)


def init_counters(app: Flask, client: redis.Redis | None) -> None:
    """Lockout counters and rate limits on ``client``, each falling back to memory while it is down."""
    rt = app.extensions[EXTENSION_KEY]
    health = RedisHealth()
    app.extensions[HEALTH_KEY] = health
    memory = MemoryLockoutStore()
    store = memory if client is None else FallbackLockoutStore(RedisLockoutStore(client), memory, health)
    keys = LockoutKeys.derive(rt.settings.redis_key_prefix, app.config["SECRET_KEY"])
    rt.lockout = Lockout(store, LockoutPolicy.from_settings(rt.settings), keys)
    init_rate_limits(app, client, health, url=rt.settings.redis_url, prefix=rt.settings.redis_key_prefix)


def redis_client() -> redis.Redis | None:
    client: redis.Redis | None = current_app.extensions[REDIS_KEY]
    return client


def redis_health() -> RedisHealth:
    health: RedisHealth = current_app.extensions[HEALTH_KEY]
    return health
