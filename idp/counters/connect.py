"""The counters a deployment uses, from ``IDP_REDIS_URL``: Redis with the database behind it, or memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection
from sqlalchemy import Engine

from idp.clock import Clock
from idp.counters.database import DatabaseCounters
from idp.counters.durable import DurableLocks
from idp.counters.fallback import FallbackCounters, RedisHealth
from idp.counters.memory import MemoryCounters
from idp.counters.redis import RedisCounters
from idp.counters.sentinel import is_sentinel_url, parse_sentinel_url
from idp.counters.store import CounterStore, Keys
from idp.db import DbSession

TIMEOUT_SECONDS = 0.5


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
    client = redis_client(url)
    database = DatabaseCounters(engine, clock, session)
    health = RedisHealth()
    store = FallbackCounters(DurableLocks(RedisCounters(client), database), database, health)
    return Counters(store, keys, client, health)


def redis_client(url: str) -> redis.Redis:
    """Return a client of the Redis at ``url``, or of the master the sentinels of a
    ``redis+sentinel://`` URL name (asked again on every new connection, so after a failover)."""
    # Short timeouts and no retries: a Redis outage slows no request by more than a moment, and a
    # failed command falls back to the database's counters at once.
    timeouts: dict[str, Any] = {"socket_timeout": TIMEOUT_SECONDS, "socket_connect_timeout": TIMEOUT_SECONDS}
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **timeouts)
    parsed = parse_sentinel_url(url)
    sentinel = Sentinel(
        parsed.sentinels,
        sentinel_kwargs={
            "username": parsed.sentinel_username,
            "password": parsed.sentinel_password,
            "retry": Retry(NoBackoff(), 0),  # discovery moves on to the next sentinel itself
            **timeouts,
        },
    )
    master: redis.Redis = sentinel.master_for(
        parsed.master_name,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        connection_class=FailoverAwareConnection,
        # Only a command the demoted master refused is sent again (see FailoverAwareConnection).
        retry=Retry(NoBackoff(), 1, supported_errors=(MasterDemoted,)),
        **timeouts,
    )
    return master


class MasterDemoted(redis.ConnectionError):
    """The server of a master connection was made a replica by a failover: the command was refused,
    and runs once more on the master the sentinels name now."""


class FailoverAwareConnection(SentinelManagedConnection):
    """redis-py's master connection, whose "previous master is now a replica" is ``MasterDemoted``.

    That refusal is immediate and nothing was written, so the one retry it gets costs no time and
    cannot count twice: a planned failover (``SENTINEL FAILOVER``) loses no count.
    """

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:
            # Ask the sentinels where the master is: redis-py would reconnect to the old address.
            self.connect()  # type: ignore[no-untyped-call]
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except MasterDemoted:
            raise
        except redis.ConnectionError as error:
            # redis-py raised it while handling the server's READONLY (or UNBLOCKED) reply.
            if isinstance(error.__context__, redis.ResponseError):
                raise MasterDemoted(str(error)) from error
            raise
