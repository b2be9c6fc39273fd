"""The counters without Redis: the in-process counters (``memory://`` and the fallback while Redis
is down), the fallback's switching, and the ``limits`` storage Flask-Limiter counts with.

Time is a ``FrozenClock`` moved by hand; Redis is a stand-in that answers or raises like redis-py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import redis
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from idp.clock import FrozenClock
from idp.counters.connect import Counters, open_counters
from idp.counters.fallback import FallbackCounters, RedisHealth
from idp.counters.limits_storage import CounterStorage
from idp.counters.memory import MemoryCounters
from idp.counters.redis import RedisCounters
from idp.counters.store import Attempt, CounterStore, Keys, Threshold, Window
from tests.redis_server import free_port

MINUTE = timedelta(minutes=1)
THREE_PER_MINUTE = Threshold(limit=3, window=MINUTE, lock=timedelta(minutes=5))


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def counters(clock: FrozenClock) -> MemoryCounters:
    return MemoryCounters(clock)


# --- fixed windows (the rate limits) -----------------------------------------------------
def test_counts_within_a_window_and_starts_again_after_it(
    counters: MemoryCounters, clock: FrozenClock
) -> None:
    assert [counters.increment("ip/signin", MINUTE).count for _ in range(3)] == [1, 2, 3]
    assert counters.window("ip/signin") == Window(3, MINUTE)
    clock.advance(timedelta(seconds=59.9))
    assert counters.increment("ip/signin", MINUTE) == Window(4, timedelta(seconds=0.1))
    clock.advance(timedelta(seconds=0.1))  # the window opened by the first increment has ended
    assert counters.window("ip/signin") == Window(0, timedelta(0))
    assert counters.increment("ip/signin", MINUTE) == Window(1, MINUTE)
    assert counters.window("ip/signin") == Window(1, MINUTE)


def test_the_window_runs_from_its_first_hit(counters: MemoryCounters, clock: FrozenClock) -> None:
    counters.increment("k", MINUTE)
    clock.advance(timedelta(seconds=30))
    # A later hit, even asking for a longer window, does not move its end.
    assert counters.increment("k", timedelta(hours=1)) == Window(2, timedelta(seconds=30))


def test_keys_count_apart_and_reset_forgets_one(counters: MemoryCounters) -> None:
    assert counters.increment("a", MINUTE, amount=5).count == 5
    counters.increment("b", MINUTE)
    assert counters.reset("a") is False  # counted, never locked
    assert (counters.window("a").count, counters.window("b").count) == (0, 1)


def test_an_unknown_key_counts_nothing(counters: MemoryCounters) -> None:
    assert counters.window("never") == Window(0, timedelta(0))
    assert counters.locked_for("never") is None
    assert counters.reset("never") is False


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


def test_concurrent_increments_are_all_counted(counters: MemoryCounters) -> None:
    def hammer() -> None:
        for _ in range(2000):
            counters.increment("shared", MINUTE)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counters.window("shared").count == 8000


# --- attempts and locks (the lockout, the Access-ID pause) --------------------------------
def test_the_attempt_reaching_the_limit_locks_and_clears_the_count(counters: MemoryCounters) -> None:
    assert counters.attempt("k", THREE_PER_MINUTE) == Attempt(granted=True, count=1)
    assert counters.attempt("k", THREE_PER_MINUTE) == Attempt(granted=True, count=2)
    assert counters.window("k") == Window(2, MINUTE)
    assert counters.attempt("k", THREE_PER_MINUTE) == Attempt(granted=True, count=3, locks=True)
    assert counters.window("k").count == 0
    assert counters.locked_for("k") == timedelta(minutes=5)


def test_a_locked_key_refuses_with_the_time_left_until_the_lock_ends(
    counters: MemoryCounters, clock: FrozenClock
) -> None:
    for _ in range(3):
        counters.attempt("k", THREE_PER_MINUTE)
    clock.advance(timedelta(minutes=2))
    assert counters.attempt("k", THREE_PER_MINUTE) == Attempt(granted=False, locked_for=timedelta(minutes=3))
    assert counters.window("k").count == 0  # refusals are not counted
    clock.advance(timedelta(minutes=3))
    assert counters.locked_for("k") is None
    assert counters.attempt("k", THREE_PER_MINUTE) == Attempt(granted=True, count=1)


def test_reset_lifts_a_lock_and_says_so(counters: MemoryCounters) -> None:
    for _ in range(3):
        counters.attempt("k", THREE_PER_MINUTE)
    assert counters.reset("k") is True
    assert counters.locked_for("k") is None
    assert counters.reset("k") is False


def test_a_limit_of_one_locks_at_the_first_attempt(counters: MemoryCounters) -> None:
    once = Threshold(limit=1, window=MINUTE, lock=MINUTE)
    assert counters.attempt("k", once) == Attempt(granted=True, count=1, locks=True)
    assert not counters.attempt("k", once).granted


def test_fifty_concurrent_attempts_grant_exactly_the_limit(counters: MemoryCounters) -> None:
    ten = Threshold(limit=10, window=MINUTE, lock=MINUTE)
    start = threading.Barrier(16)

    def attempt(n: int) -> Attempt:
        if n < 16:
            start.wait()
        return counters.attempt("shared", ten)

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(attempt, range(50)))
    assert sum(a.granted for a in outcomes) == 10
    assert sum(a.locks for a in outcomes) == 1
    assert sorted(a.count for a in outcomes if a.granted) == list(range(1, 11))


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
    assert counters.window("p:k") == Window(5, MINUTE)
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
    assert counters.window("p:a").count == 0
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
def test_memory_url_opens_the_in_process_counters(clock: FrozenClock) -> None:
    opened = open_counters("memory://", prefix="idp:", secret_key="s3cret", clock=clock)
    assert isinstance(opened.store, MemoryCounters)
    assert opened.store.clock is clock
    assert opened.keys == Keys.derive("idp:", "s3cret")
    assert opened.client is None and opened.health is None


@pytest.fixture
def unreachable(clock: FrozenClock) -> Iterator[Counters]:
    """Counters opened on a Redis URL where nothing listens."""
    opened = open_counters(f"redis://127.0.0.1:{free_port()}/0", prefix="idp:", secret_key="s", clock=clock)
    yield opened
    assert opened.client is not None
    opened.client.close()


def test_redis_url_opens_redis_with_the_in_process_fallback(
    unreachable: Counters, clock: FrozenClock
) -> None:
    store = unreachable.store
    assert isinstance(store, FallbackCounters)
    assert isinstance(store.primary, RedisCounters) and store.primary.client is unreachable.client
    assert isinstance(store.fallback, MemoryCounters) and store.fallback.clock is clock
    assert store.health is unreachable.health
    assert unreachable.keys == Keys.derive("idp:", "s")
    # Short timeouts: an outage slows no request by more than a moment.
    assert unreachable.client is not None
    options = unreachable.client.connection_pool.connection_kwargs
    assert options["socket_timeout"] == 0.5
    assert options["socket_connect_timeout"] == 0.5


def test_counters_opened_on_an_unreachable_redis_still_count(unreachable: Counters) -> None:
    store = unreachable.store
    assert isinstance(store, FallbackCounters)
    assert store.attempt("k", THREE_PER_MINUTE) == Attempt(granted=True, count=1)
    assert unreachable.health is not None and unreachable.health.fallback_active
    assert store.fallback.window("k").count == 1
