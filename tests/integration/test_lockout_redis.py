"""The lockout store on the real Redis: atomic counting, expiries, and the fallback through an outage."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from idp.accounts.lockout import (
    FallbackLockoutStore,
    LockedOut,
    Lockout,
    LockoutKeys,
    MemoryLockoutStore,
    RedisLockoutStore,
    lock_key,
)
from idp.fallback import RedisHealth
from idp.policy import LockoutPolicy
from tests.conftest import REDIS_TEST_URL
from tests.redis_server import RedisServer

POLICY = LockoutPolicy(threshold=10, duration=timedelta(minutes=5), window=timedelta(minutes=15))


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_TEST_URL, socket_timeout=2)
    yield client
    client.close()


@pytest.fixture
def keys(client: redis.Redis) -> Iterator[LockoutKeys]:
    """Keys under a prefix of this test's own, deleted afterwards."""
    prefix = f"idp-test:{secrets.token_hex(6)}:"
    yield LockoutKeys.derive(prefix, "integration-secret")
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)


@pytest.fixture
def lockout(client: redis.Redis, keys: LockoutKeys) -> Lockout:
    return Lockout(RedisLockoutStore(client), POLICY, keys)


def test_fifty_concurrent_attempts_grant_exactly_the_threshold(lockout: Lockout, client: redis.Redis) -> None:
    key = lockout.keys.user("dana.rivera")

    def attempt(_: int) -> str:
        try:
            started = lockout.begin(key)
        except LockedOut:
            return "refused"
        return "locks" if started.start.locks else "granted"

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(attempt, range(50)))
    assert outcomes.count("granted") + outcomes.count("locks") == POLICY.threshold
    assert outcomes.count("locks") == 1
    assert outcomes.count("refused") == 40
    left = client.pttl(lock_key(key))
    assert 295_000 < left <= 300_000
    assert client.exists(key) == 0  # the count starts again after the lock


def test_first_failure_sets_the_window(lockout: Lockout, client: redis.Redis) -> None:
    key = lockout.keys.user("dana")
    lockout.begin(key)
    lockout.begin(key)
    assert lockout.failures("dana") == 2
    assert 895_000 < client.pttl(key) <= 900_000


def test_lock_expires_and_counting_starts_again(client: redis.Redis, keys: LockoutKeys) -> None:
    short = LockoutPolicy(threshold=2, duration=timedelta(milliseconds=300), window=timedelta(minutes=1))
    lockout = Lockout(RedisLockoutStore(client), short, keys)
    key = keys.user("dana")
    lockout.begin(key)
    assert lockout.begin(key).start.locks
    with pytest.raises(LockedOut) as locked:
        lockout.check(key)
    assert locked.value.resets_in <= timedelta(milliseconds=300)
    assert locked.value.minutes == 1
    time.sleep(0.4)  # Redis expires the lock on its own clock
    lockout.check(key)
    assert lockout.begin(key).start.count == 1


def test_success_and_unlock_clear_the_keys(lockout: Lockout, client: redis.Redis) -> None:
    key = lockout.keys.user("dana")
    for _ in range(3):
        lockout.begin(key)
    lockout.succeeded(lockout.begin(key))
    assert client.exists(key) == 0
    for _ in range(POLICY.threshold):
        lockout.begin(key)
    assert client.exists(lock_key(key)) == 1
    assert lockout.unlock_username("DANA") is True
    assert client.exists(key, lock_key(key)) == 0


def test_fallback_counts_in_memory_while_redis_is_down_and_returns_to_it(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        client = redis.Redis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        health = RedisHealth(retry_seconds=0.0)
        store = FallbackLockoutStore(RedisLockoutStore(client), MemoryLockoutStore(), health)
        policy = LockoutPolicy(threshold=3)
        lockout = Lockout(store, policy, LockoutKeys.derive("idp:", "s"))
        key = lockout.keys.user("dana")

        lockout.begin(key)
        assert server.command("GET", key) == b"1" and not health.fallback_active

        server.stop()
        lockout.begin(key)  # no exception: counted in this process
        assert health.fallback_active
        assert store.fallback.count(key) == 1
        assert lockout.begin(key).start.count == 2
        assert lockout.begin(key).start.locks  # the memory fallback still locks
        with pytest.raises(LockedOut):
            lockout.check(key)

        server.start()  # the same port, empty (no persistence)
        lockout.begin(lockout.keys.user("sam"))
        assert not health.fallback_active
        assert server.command("GET", lockout.keys.user("sam")) == b"1"
        client.close()
    finally:
        server.stop()
