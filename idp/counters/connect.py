"""The counters a deployment uses, from ``IDP_REDIS_URL``: Redis with the in-process fallback, or memory."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from idp.clock import Clock
from idp.counters.fallback import FallbackCounters, RedisHealth
from idp.counters.memory import MemoryCounters
from idp.counters.redis import RedisCounters
from idp.counters.store import CounterStore, Keys


@dataclass(frozen=True)
class Counters:
    store: CounterStore
    keys: Keys
    # None for memory://, which has no server to ask about.
    client: redis.Redis | None = None
    health: RedisHealth | None = None


def open_counters(url: str, *, prefix: str, secret_key: str, clock: Clock) -> Counters:
    keys = Keys.derive(prefix, secret_key)
    memory = MemoryCounters(clock)
    if url.startswith("memory://"):
        return Counters(memory, keys)
    # Short timeouts and no retries: a Redis outage slows no request by more than a moment, and a
    # failed command falls back to the process's own counters at once.
    client = redis.Redis.from_url(
        url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    health = RedisHealth()
    return Counters(FallbackCounters(RedisCounters(client), memory, health), keys, client, health)
