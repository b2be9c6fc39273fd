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

    @property
    def base_exceptions(self) -> type[Exception]:
        return RedisError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self.counters.increment(self.prefix + key, timedelta(seconds=expiry), amount).count

    def get(self, key: str) -> int:
        return self.counters.window(self.prefix + key).count

    def get_expiry(self, key: str) -> float:
        return time.time() + self.counters.window(self.prefix + key).resets_in.total_seconds()

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        return None  # the counters of a deployment are never wiped from here

    def clear(self, key: str) -> None:
        self.counters.reset(self.prefix + key)
