"""Locks that outlive Redis: each lock Redis sets is written to the database too, and read back from
there when Redis has none (it restarted empty, or the lock was set while it was down)."""

from __future__ import annotations

from datetime import timedelta

from idp.counters.database import DatabaseCounters
from idp.counters.redis import RedisCounters
from idp.counters.store import Attempt, Threshold, Window


class DurableLocks:
    """Redis's counters, whose locks the database keeps as well: no Redis restart lifts one.

    Counts stay in Redis alone (losing them costs an attacker nothing); only locks are copied.
    """

    def __init__(self, redis: RedisCounters, database: DatabaseCounters) -> None:
        self.redis = redis
        self.database = database

    def attempt(self, key: str, threshold: Threshold) -> Attempt:
        attempt = self.redis.attempt(key, threshold)
        if attempt.locks:
            self.database.lock(key, threshold.lock)
        return attempt

    def locked_for(self, key: str) -> timedelta | None:
        left = self.redis.locked_for(key)
        if left is not None:
            return left
        # Redis cannot tell a lock it lost from none: one primary-key read per check it cannot answer.
        left = self.database.locked_for(key)
        if left is not None:
            self.redis.lock(key, left)  # Redis answers the next checks, and its attempts refuse
        return left

    def window(self, key: str) -> Window:
        return self.redis.window(key)

    def reset(self, key: str) -> bool:
        was_locked, was_counted = self.redis.forget(key)
        if was_locked:
            self.database.reset(key)
            return True
        if was_counted:
            # Attempts that Redis counted after a check found no lock in either store (or copied the
            # database's here): the reset after a right password, which then costs no statement.
            return False
        # Redis knows nothing of the key (a restart, an outage): the database may still hold a lock.
        # It is read first, so that the usual answer (none) takes no write lock.
        return self.database.locked_for(key) is not None and self.database.reset(key)

    def increment(self, key: str, window: timedelta, amount: int = 1) -> Window:
        return self.redis.increment(key, window, amount)
