"""The counters on the real Redis: atomic counting, expiries, and the fallback through an outage."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from idp.accounts.lockout import LockedOut, Lockout
from idp.clock import FrozenClock
from idp.counters.fallback import FallbackCounters, RedisHealth
from idp.counters.memory import MemoryCounters
from idp.counters.redis import RedisCounters
from idp.counters.store import Keys, Window, lock_key
from idp.policy import LockoutPolicy
from tests.conftest import REDIS_TEST_URL
from tests.redis_server import RedisServer

POLICY = LockoutPolicy(threshold=10, duration=timedelta(minutes=5), window=timedelta(minutes=15))
# TTLs are read back with a margin no stall of the test machine reaches, yet far from the other
# TTL in play: a lock (5 min) is never mistaken for a window (15 min), nor either for no TTL.
MARGIN_MS = 60_000


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_TEST_URL, socket_timeout=2)
    yield client
    client.close()


@pytest.fixture
def keys(client: redis.Redis) -> Iterator[Keys]:
    """Keys under a prefix of this test's own, deleted afterwards."""
    prefix = f"idp-test:{secrets.token_hex(6)}:"
    yield Keys.derive(prefix, "integration-secret")
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)


@pytest.fixture
def counters(client: redis.Redis) -> RedisCounters:
    return RedisCounters(client)


@pytest.fixture
def lockout(counters: RedisCounters, keys: Keys) -> Lockout:
    return Lockout(counters, keys, POLICY)


def expire_now(client: redis.Redis, key: str) -> None:
    """Make Redis expire ``key`` on its own clock (as its TTL running out would), and wait for it."""
    assert client.pexpire(key, 1)
    deadline = time.monotonic() + 10
    while client.exists(key):
        assert time.monotonic() < deadline, f"{key} did not expire"
        time.sleep(0.005)


def test_fifty_concurrent_attempts_grant_exactly_the_threshold(lockout: Lockout, client: redis.Redis) -> None:
    key = lockout.user_key("dana.rivera")

    def attempt(_: int) -> str:
        try:
            started = lockout.begin(key)
        except LockedOut:
            return "refused"
        return "locks" if started.attempt.locks else "granted"

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(attempt, range(50)))
    assert outcomes.count("granted") + outcomes.count("locks") == POLICY.threshold
    assert outcomes.count("locks") == 1
    assert outcomes.count("refused") == 40
    left = client.pttl(lock_key(key))
    assert 300_000 - MARGIN_MS < left <= 300_000
    assert client.exists(key) == 0  # the count starts again after the lock


def test_first_failure_sets_the_window(lockout: Lockout, client: redis.Redis) -> None:
    key = lockout.user_key("dana")
    lockout.begin(key)
    first = client.pttl(key)
    assert 900_000 - MARGIN_MS < first <= 900_000
    lockout.begin(key)
    assert lockout.failures("dana") == 2
    assert client.pttl(key) <= first  # a later failure does not move the window's end


def test_a_refused_attempt_tells_the_time_left_on_the_lock(lockout: Lockout, client: redis.Redis) -> None:
    key = lockout.user_key("dana")
    for _ in range(POLICY.threshold):
        lockout.begin(key)
    with pytest.raises(LockedOut) as locked:
        lockout.begin(key)
    assert (
        timedelta(minutes=5) - timedelta(milliseconds=MARGIN_MS)
        < locked.value.resets_in
        <= timedelta(minutes=5)
    )
    assert locked.value.minutes == 5
    with pytest.raises(LockedOut) as locked:
        lockout.check(key)
    assert locked.value.minutes == 5
    assert client.exists(key) == 0  # refusals are not counted


def test_lock_expires_and_counting_starts_again(
    client: redis.Redis, keys: Keys, counters: RedisCounters
) -> None:
    short = LockoutPolicy(threshold=2, duration=timedelta(minutes=5), window=timedelta(minutes=1))
    lockout = Lockout(counters, keys, short)
    key = keys.name("lockout:user", "dana")
    lockout.begin(key)
    assert lockout.begin(key).attempt.locks
    # Less than a minute left, on Redis's clock: told as one minute.
    assert client.pexpire(lock_key(key), 30_000)
    with pytest.raises(LockedOut) as locked:
        lockout.check(key)
    assert timedelta(0) < locked.value.resets_in <= timedelta(seconds=30)
    assert locked.value.minutes == 1
    expire_now(client, lock_key(key))  # Redis expires the lock on its own clock
    lockout.check(key)
    assert lockout.begin(key).attempt.count == 1


def test_success_and_unlock_clear_the_keys(lockout: Lockout, client: redis.Redis) -> None:
    key = lockout.user_key("dana")
    for _ in range(3):
        lockout.begin(key)
    lockout.succeeded(lockout.begin(key))
    assert client.exists(key) == 0
    for _ in range(POLICY.threshold):
        lockout.begin(key)
    assert client.exists(lock_key(key)) == 1
    assert lockout.unlock_username("DANA") is True
    assert client.exists(key, lock_key(key)) == 0
    assert lockout.unlock_username("dana") is False


def test_fixed_window_counts_from_its_first_hit(
    counters: RedisCounters, keys: Keys, client: redis.Redis
) -> None:
    key = keys.name("ratelimit", "203.0.113.7/signin")
    first = counters.increment(key, timedelta(minutes=15))
    assert first.count == 1
    assert (
        timedelta(minutes=15) - timedelta(milliseconds=MARGIN_MS) < first.resets_in <= timedelta(minutes=15)
    )
    # A later hit, even asking for a shorter window, neither moves its end nor counts apart.
    second = counters.increment(key, timedelta(minutes=1), amount=4)
    assert second.count == 5
    assert timedelta(minutes=1) < second.resets_in <= first.resets_in
    window = counters.window(key)
    assert window.count == 5
    assert timedelta(minutes=1) < window.resets_in <= first.resets_in
    assert counters.reset(key) is False  # counted, never locked
    assert counters.window(key) == Window(0, timedelta(0))
    assert client.exists(key) == 0


def test_fixed_window_starts_again_when_it_expires(
    counters: RedisCounters, keys: Keys, client: redis.Redis
) -> None:
    key = keys.name("ratelimit", "203.0.113.7/token")
    counters.increment(key, timedelta(minutes=15), amount=3)
    expire_now(client, key)
    assert counters.window(key) == Window(0, timedelta(0))
    again = counters.increment(key, timedelta(minutes=15))
    assert again.count == 1
    assert again.resets_in > timedelta(minutes=15) - timedelta(milliseconds=MARGIN_MS)


def test_fallback_counts_in_memory_while_redis_is_down_and_returns_to_it(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        # The client open_counters makes: short timeouts, no retries.
        client = redis.Redis.from_url(
            server.url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
        )
        health = RedisHealth(retry_seconds=0.0)
        memory = MemoryCounters(FrozenClock())
        store = FallbackCounters(RedisCounters(client), memory, health)
        lockout = Lockout(store, Keys.derive("idp:", "s"), LockoutPolicy(threshold=3))
        key = lockout.user_key("dana")

        lockout.begin(key)
        assert server.command("GET", key) == b"1" and not health.fallback_active

        server.stop()
        lockout.begin(key)  # no exception: counted in this process
        assert health.fallback_active
        assert memory.window(key).count == 1
        assert lockout.begin(key).attempt.count == 2
        assert lockout.begin(key).attempt.locks  # the memory fallback still locks
        with pytest.raises(LockedOut):
            lockout.check(key)

        server.start()  # the same port, empty (no persistence)
        lockout.begin(lockout.user_key("sam"))
        assert not health.fallback_active
        assert server.command("GET", lockout.user_key("sam")) == b"1"
        assert memory.window(lockout.user_key("sam")).count == 0
        client.close()
    finally:
        server.stop()
