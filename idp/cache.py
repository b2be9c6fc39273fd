"""Redis: counters and caches that may be lost. ``memory://`` means none (one process only)."""

from __future__ import annotations

import redis
from flask import Flask, current_app

from idp.runtime import EXTENSION_KEY

REDIS_KEY = "idp.redis"


def init_redis(app: Flask) -> None:
    url = app.extensions[EXTENSION_KEY].settings.redis_url
    client = None
    if not url.startswith("memory://"):
        # Short timeouts: a Redis outage must slow no request by more than a moment.
        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    app.extensions[REDIS_KEY] = client


def redis_client() -> redis.Redis | None:
    client: redis.Redis | None = current_app.extensions[REDIS_KEY]
    return client
