"""The ``limits`` library's storage over a ``CounterStore``: Flask-Limiter counts with our counters.

Only fixed windows (``incr``, ``get``, ``get_expiry``), the strategy the per-address limits use;
Redis outages are the counter store's to handle, so this storage never fails.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from limits.storage import Storage
from redis.exceptions import RedisError

from idp.counters.store import CounterStore


class CounterStorage(Storage):
    STORAGE_SCHEME = ["idp-counters"]  # noqa: RUF012 (the registry of ``limits`` reads a list)

    def __init__(self, uri: str, *, counters: CounterStore, prefix: str = "", **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=False, **options)
        self.counters = counters
        self.prefix = prefix

    def counter_key(self, key: str) -> str:
        """Return the counters' key of the limits library's ``key``."""
        # A Redis Cluster hash tag around the limit's key: its count and its lock (``lock_key``)
        # land in one slot, as ``Keys.name`` makes the other counters' keys do. A tag ends at the
        # first "}" and an empty one tags nothing, so "}" is escaped and the tag is never empty.
        escaped = key.replace("%", "%25").replace("}", "%7D")
        return f"{self.prefix}{{limit:{escaped}}}"

    @property
    def base_exceptions(self) -> type[Exception]:
        return RedisError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self.counters.increment(self.counter_key(key), timedelta(seconds=expiry), amount).count

    def get(self, key: str) -> int:
        return self.counters.window(self.counter_key(key)).count

    def get_expiry(self, key: str) -> float:
        return time.time() + self.counters.window(self.counter_key(key)).resets_in.total_seconds()

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        return None  # the counters of a deployment are never wiped from here

    def clear(self, key: str) -> None:
        self.counters.reset(self.counter_key(key))
