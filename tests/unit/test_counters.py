"""The counters without Redis: the in-process counters (``memory://``), the fallback's switching
(the database's counters are tested in tests/integration/test_counters_database.py), the
``limits`` storage Flask-Limiter counts with, and which counters a URL opens.

Time is a ``FrozenClock`` moved by hand; Redis is a stand-in that answers or raises like redis-py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import redis
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from idp.clock import FrozenClock
from idp.counters.connect import Counters, open_counters
from idp.counters.database import DatabaseCounters
from idp.counters.durable import DurableLocks
from idp.counters.fallback import FallbackCounters, RedisHealth
from idp.counters.limits_storage import CounterStorage
from idp.counters.memory import MemoryCounters
from idp.counters.redis import RedisCounters
from idp.counters.store import Attempt, CounterStore, Keys, Threshold, Window
from tests.counter_contract import *  # noqa: F403 (the contract's tests, run on these counters)
from tests.redis_server import free_port

MINUTE = timedelta(minutes=1)
THREE_PER_MINUTE = Threshold(limit=3, window=MINUTE, lock=timedelta(minutes=5))


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def counters(clock: FrozenClock) -> MemoryCounters:
    return MemoryCounters(clock)


@pytest.fixture
def counter_clock(clock: FrozenClock) -> FrozenClock:
    return clock


# --- what every store promises (tests/counter_contract.py), then the in-process store's own ------
def test_the_table_stays_bounded_dropping_ended_windows_first(clock: FrozenClock) -> None:
    counters = MemoryCounters(clock, max_keys=3)
    counters.increment("old", timedelta(seconds=1))
    counters.increment("kept-1", timedelta(minutes=10))
    counters.increment("kept-2", timedelta(minutes=10))
    clock.advance(timedelta(seconds=2))
    counters.increment("new", timedelta(minutes=10))
    assert [counters.window(k).count for k in ("old", "kept-1", "kept-2", "new")] == [0, 1, 1, 1]
    counters.increment("newer", timedelta(minutes=10))  # all live: the oldest key gives way
    assert [counters.window(k).count for k in ("kept-1", "kept-2", "new", "newer")] == [0, 1, 1, 1]
    assert len(counters._entries) == 3


def test_counting_starts_no_thread(counters: MemoryCounters) -> None:
    # limits' MemoryStorage started a timer thread on nearly every increment (a sign-in's cost).
    before = threading.active_count()
    for n in range(200):
        counters.increment(f"ip-{n % 7}", MINUTE)
        counters.attempt(f"user-{n % 5}", THREE_PER_MINUTE)
    assert threading.active_count() == before


# --- the fallback while Redis does not answer ---------------------------------------------
class Ticker:
    """A monotonic clock for ``RedisHealth`` that moves when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FlakyRedis:
    """Stands for ``RedisCounters``: counts while up, raises what redis-py raises while down.

    Every call is recorded by name, answered or not.
    """

    def __init__(self, clock: FrozenClock) -> None:
        self.store = MemoryCounters(clock)
        self.error: Exception | None = None
        self.calls: list[str] = []

    def down(self, error: Exception | None = None) -> None:
        self.error = error or redis.exceptions.ConnectionError("Error 111 connecting. Connection refused.")

    def up(self) -> None:
        self.error = None

    def _store(self, name: str) -> MemoryCounters:
        self.calls.append(name)
        if self.error is not None:
            raise self.error
        return self.store

    def attempt(self, key: str, threshold: Threshold) -> Attempt:
        return self._store("attempt").attempt(key, threshold)

    def locked_for(self, key: str) -> timedelta | None:
        return self._store("locked_for").locked_for(key)

    def window(self, key: str) -> Window:
        return self._store("window").window(key)

    def reset(self, key: str) -> bool:
        return self._store("reset").reset(key)

    def increment(self, key: str, window: timedelta, amount: int = 1) -> Window:
        return self._store("increment").increment(key, window, amount)


class Outage:
    def __init__(self, clock: FrozenClock) -> None:
        self.ticker = Ticker()
        self.health = RedisHealth(retry_seconds=1.0, monotonic=self.ticker)
        self.primary = FlakyRedis(clock)
        self.fallback = FlakyRedis(clock)  # always up: it records which store answered
        self.store = FallbackCounters(self.primary, self.fallback, self.health)


@pytest.fixture
def outage(clock: FrozenClock) -> Outage:
    return Outage(clock)


OPERATIONS: dict[str, Callable[[CounterStore], object]] = {
    "attempt": lambda store: store.attempt("k", THREE_PER_MINUTE),
    "locked_for": lambda store: store.locked_for("k"),
    "window": lambda store: store.window("k"),
    "reset": lambda store: store.reset("k"),
    "increment": lambda store: store.increment("k", MINUTE, 2),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_every_operation_goes_to_redis_while_it_answers(outage: Outage, operation: str) -> None:
    run = OPERATIONS[operation]
    assert run(outage.store) == run(MemoryCounters(FrozenClock()))
    assert outage.primary.calls == [operation]
    assert outage.fallback.calls == []
    assert not outage.health.fallback_active


@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ConnectionError("refused"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
    ],
    ids=["refused", "timeout"],
)
def test_every_operation_falls_back_to_memory_when_redis_fails(
    outage: Outage, operation: str, error: Exception
) -> None:
    run = OPERATIONS[operation]
    outage.primary.down(error)
    assert run(outage.store) == run(MemoryCounters(FrozenClock()))  # no exception
    assert outage.primary.calls == [operation]  # Redis was tried first
    assert outage.fallback.calls == [operation]
    assert outage.health.fallback_active


def test_fallback_counts_in_memory_while_redis_is_down_and_returns_to_it(outage: Outage) -> None:
    store, primary, fallback, health = outage.store, outage.primary, outage.fallback, outage.health
    assert store.attempt("dana", THREE_PER_MINUTE).count == 1
    assert primary.store.window("dana").count == 1

    primary.down()
    assert store.attempt("dana", THREE_PER_MINUTE).count == 1  # counted in this process, afresh
    assert health.fallback_active
    assert fallback.store.window("dana").count == 1
    assert store.attempt("dana", THREE_PER_MINUTE).count == 2
    assert store.attempt("dana", THREE_PER_MINUTE).locks  # the memory fallback still locks
    assert store.locked_for("dana") == THREE_PER_MINUTE.lock
    # Within the retry interval Redis is not asked again: a request is not slowed by each command.
    assert primary.calls == ["attempt", "attempt"]

    outage.ticker.now += health.retry_seconds  # one command tries Redis again: still down
    assert store.window("dana").count == 0
    assert primary.calls[-1] == "window"
    assert health.fallback_active
    assert store.locked_for("dana") == THREE_PER_MINUTE.lock
    assert primary.calls[-1] == "window"

    primary.up()
    outage.ticker.now += health.retry_seconds
    assert store.attempt("sam", THREE_PER_MINUTE).count == 1
    assert not health.fallback_active
    assert primary.store.window("sam").count == 1
    assert fallback.store.window("sam").count == 0
    # Redis's own counts again: what memory counted in the outage is not Redis's.
    assert store.locked_for("dana") is None
    assert store.window("dana").count == 1


def test_errors_other_than_redis_errors_are_not_hidden(outage: Outage) -> None:
    outage.primary.down(ValueError("a bug, not an outage"))
    with pytest.raises(ValueError, match="a bug"):
        outage.store.attempt("k", THREE_PER_MINUTE)
    assert outage.fallback.calls == []
    assert not outage.health.fallback_active


# --- the limits library's storage (Flask-Limiter) -----------------------------------------
@pytest.fixture
def storage(counters: MemoryCounters) -> CounterStorage:
    return CounterStorage("idp-counters://", counters=counters, prefix="p:")


def test_flask_limiters_storage_uri_finds_the_counter_storage(counters: MemoryCounters) -> None:
    # What Flask-Limiter does with storage_uri and storage_options (idp.web.rate_limits).
    found = storage_from_string("idp-counters://", counters=counters, prefix="p:")  # type: ignore[arg-type]
    assert isinstance(found, CounterStorage)
    assert found.counters is counters
    assert found.prefix == "p:"


def test_incr_counts_a_fixed_window_under_the_prefix(
    storage: CounterStorage, counters: MemoryCounters, clock: FrozenClock
) -> None:
    assert [storage.incr("k", 60) for _ in range(3)] == [1, 2, 3]
    assert storage.incr("k", 60, amount=2) == 5
    assert storage.get("k") == 5
    assert counters.window("p:{limit:k}") == Window(5, MINUTE)
    assert counters.window("k").count == 0
    assert storage.get("other") == 0
    clock.advance(timedelta(seconds=60))
    assert storage.get("k") == 0
    assert storage.incr("k", 60) == 1


def test_get_expiry_is_the_unix_time_the_window_ends(storage: CounterStorage, clock: FrozenClock) -> None:
    storage.incr("k", 60)
    clock.advance(timedelta(seconds=20))
    before = time.time()
    expiry = storage.get_expiry("k")
    after = time.time()
    assert before + 40 <= expiry <= after + 40
    before = time.time()
    expiry = storage.get_expiry("never-hit")
    after = time.time()
    assert before <= expiry <= after  # nothing counted: nothing to wait for


def test_clear_forgets_one_key_and_reset_wipes_nothing(
    storage: CounterStorage, counters: MemoryCounters
) -> None:
    storage.incr("a", 60, amount=4)
    storage.incr("b", 60)
    storage.clear("a")
    assert (storage.get("a"), storage.get("b")) == (0, 1)
    assert counters.window("p:{limit:a}").count == 0
    assert storage.reset() is None
    assert storage.get("b") == 1
    assert storage.check() is True


def test_the_fixed_window_strategy_limits_over_the_counters(
    storage: CounterStorage, clock: FrozenClock
) -> None:
    limiter = FixedWindowRateLimiter(storage)
    two_a_minute = parse("2/minute")
    assert [limiter.hit(two_a_minute, "203.0.113.7", "signin") for _ in range(3)] == [True, True, False]
    assert not limiter.test(two_a_minute, "203.0.113.7", "signin")
    assert limiter.hit(two_a_minute, "198.51.100.1", "signin")
    stats = limiter.get_window_stats(two_a_minute, "203.0.113.7", "signin")
    assert stats.remaining == 0
    assert time.time() < stats.reset_time <= time.time() + 60
    clock.advance(MINUTE)
    assert limiter.hit(two_a_minute, "203.0.113.7", "signin")


def test_the_storage_starts_no_thread(storage: CounterStorage) -> None:
    before = threading.active_count()
    for n in range(200):
        storage.incr(f"ip-{n % 7}", 60)
    assert threading.active_count() == before


# --- which counters a deployment opens ----------------------------------------------------
@pytest.fixture
def engine() -> Iterator[Engine]:
    """An engine that is never connected: opening the counters only keeps it."""
    engine = create_engine("sqlite://")
    yield engine
    engine.dispose()


def test_memory_url_opens_the_in_process_counters(clock: FrozenClock, engine: Engine) -> None:
    opened = open_counters(
        "memory://", prefix="idp:", secret_key="s3cret", clock=clock, engine=engine, session=Session(engine)
    )
    assert isinstance(opened.store, MemoryCounters)
    assert opened.store.clock is clock
    assert opened.keys == Keys.derive("idp:", "s3cret")
    assert opened.client is None and opened.health is None


@pytest.fixture
def unreachable(clock: FrozenClock, engine: Engine) -> Iterator[Counters]:
    """Counters opened on a Redis URL where nothing listens."""
    opened = open_counters(
        f"redis://127.0.0.1:{free_port()}/0",
        prefix="idp:",
        secret_key="s",
        clock=clock,
        engine=engine,
        session=Session(engine),
    )
    yield opened
    assert opened.client is not None
    opened.client.close()


def test_redis_url_opens_redis_with_the_database_behind_it(
    unreachable: Counters, clock: FrozenClock, engine: Engine
) -> None:
    store = unreachable.store
    assert isinstance(store, FallbackCounters)
    # Redis, whose locks the database keeps too; the same database counts while Redis is down.
    assert isinstance(store.primary, DurableLocks)
    assert isinstance(store.primary.redis, RedisCounters)
    assert store.primary.redis.client is unreachable.client
    assert isinstance(store.fallback, DatabaseCounters) and store.primary.database is store.fallback
    assert store.fallback.engine is engine and store.fallback.clock is clock
    assert store.health is unreachable.health
    assert unreachable.keys == Keys.derive("idp:", "s")
    # Short timeouts: an outage slows no request by more than a moment.
    assert unreachable.client is not None
    options = unreachable.client.connection_pool.connection_kwargs
    assert options["socket_timeout"] == 0.5
    assert options["socket_connect_timeout"] == 0.5
