"""The counters a deployment uses, from ``IDP_REDIS_URL``: Redis with the database behind it, or memory."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Engine

from idp.clock import Clock
from idp.counters.database import DatabaseCounters
from idp.counters.durable import DurableLocks
from idp.counters.fallback import FallbackCounters, RedisHealth
from idp.counters.memory import MemoryCounters
from idp.counters.redis import RedisCounters
from idp.counters.store import CounterStore, Keys
from idp.db import DbSession


@dataclass(frozen=True)
class Counters:
    store: CounterStore
    keys: Keys
    # None for memory://, which has no server to ask about.
    client: redis.Redis | None = None
    health: RedisHealth | None = None


def open_counters(
    url: str, *, prefix: str, secret_key: str, clock: Clock, engine: Engine, session: DbSession
) -> Counters:
    """Open the counters of ``url``: Redis with ``engine``'s database behind it, or memory.

    ``session`` is the request's: the database's counters join its transaction only where a
    connection of their own could not write (SQLite's single writer, ``DatabaseCounters._shared``).
    """
    keys = Keys.derive(prefix, secret_key)
    if url.startswith("memory://"):
        return Counters(MemoryCounters(clock), keys)
    # Short timeouts and no retries: a Redis outage slows no request by more than a moment, and a
    # failed command falls back to the database's counters at once.
    client = redis.Redis.from_url(
        url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    database = DatabaseCounters(engine, clock, session)
    health = RedisHealth()
    store = FallbackCounters(DurableLocks(RedisCounters(client), database), database, health)
    return Counters(store, keys, client, health)
