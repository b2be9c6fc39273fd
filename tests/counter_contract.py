"""What every ``CounterStore`` promises (idp/counters/store.py), written once.

A test module imports these tests and gives them two fixtures: ``counters``, the store under test,
and ``counter_clock``, the ``FrozenClock`` it runs on (tests/unit/test_counters.py for the
in-process counters, tests/integration/test_counters_database.py for the database's).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from idp.clock import FrozenClock
from idp.counters.store import Attempt, CounterStore, Threshold, Window

MINUTE = timedelta(minutes=1)
THREE_PER_MINUTE = Threshold(limit=3, window=MINUTE, lock=timedelta(minutes=5))


# --- fixed windows (the rate limits) -----------------------------------------------------
def test_counts_within_a_window_and_starts_again_after_it(
    counters: CounterStore, counter_clock: FrozenClock
) -> None:
    assert [counters.increment("ip/signin", MINUTE).count for _ in range(3)] == [1, 2, 3]
    assert counters.window("ip/signin") == Window(3, MINUTE)
    counter_clock.advance(timedelta(seconds=59.9))
    assert counters.increment("ip/signin", MINUTE) == Window(4, timedelta(seconds=0.1))
    counter_clock.advance(timedelta(seconds=0.1))  # the window opened by the first increment has ended
    assert counters.window("ip/signin") == Window(0, timedelta(0))
    assert counters.increment("ip/signin", MINUTE) == Window(1, MINUTE)
    assert counters.window("ip/signin") == Window(1, MINUTE)


def test_the_window_runs_from_its_first_hit(counters: CounterStore, counter_clock: FrozenClock) -> None:
    counters.increment("k", MINUTE)
    counter_clock.advance(timedelta(seconds=30))
    # A later hit, even asking for a longer window, does not move its end.
    assert counters.increment("k", timedelta(hours=1)) == Window(2, timedelta(seconds=30))


def test_keys_count_apart_and_reset_forgets_one(counters: CounterStore) -> None:
    assert counters.increment("a", MINUTE, amount=5).count == 5
    counters.increment("b", MINUTE)
    assert counters.reset("a") is False  # counted, never locked
    assert (counters.window("a").count, counters.window("b").count) == (0, 1)


def test_an_unknown_key_counts_nothing(counters: CounterStore) -> None:
    assert counters.window("never") == Window(0, timedelta(0))
    assert counters.locked_for("never") is None
    assert counters.reset("never") is False


def test_concurrent_increments_are_all_counted(counters: CounterStore) -> None:
    def hammer() -> None:
        for _ in range(100):
            counters.increment("shared", MINUTE)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counters.window("shared").count == 400


# --- attempts and locks (the lockout, the Access-ID pause) --------------------------------
def test_the_attempt_reaching_the_limit_locks_and_clears_the_count(counters: CounterStore) -> None:
    assert counters.attempt("k", THREE_PER_MINUTE) == Attempt(granted=True, count=1)
    assert counters.attempt("k", THREE_PER_MINUTE) == Attempt(granted=True, count=2)
    assert counters.window("k") == Window(2, MINUTE)
    assert counters.attempt("k", THREE_PER_MINUTE) == Attempt(granted=True, count=3, locks=True)
    assert counters.window("k").count == 0
    assert counters.locked_for("k") == timedelta(minutes=5)


def test_a_locked_key_refuses_with_the_time_left_until_the_lock_ends(
    counters: CounterStore, counter_clock: FrozenClock
) -> None:
    for _ in range(3):
        counters.attempt("k", THREE_PER_MINUTE)
    counter_clock.advance(timedelta(minutes=2))
    refused = Attempt(granted=False, locked_for=timedelta(minutes=3))
    assert counters.attempt("k", THREE_PER_MINUTE) == refused
    assert counters.attempt("k", THREE_PER_MINUTE) == refused  # a second refusal reads the same
    assert counters.window("k").count == 0  # refusals are not counted
    counter_clock.advance(timedelta(minutes=3))
    assert counters.locked_for("k") is None
    assert counters.attempt("k", THREE_PER_MINUTE) == Attempt(granted=True, count=1)


def test_a_window_that_ended_counts_afresh(counters: CounterStore, counter_clock: FrozenClock) -> None:
    counters.attempt("k", THREE_PER_MINUTE)
    counters.attempt("k", THREE_PER_MINUTE)
    counter_clock.advance(MINUTE)
    assert counters.attempt("k", THREE_PER_MINUTE) == Attempt(granted=True, count=1)
    assert counters.window("k") == Window(1, MINUTE)


def test_reset_lifts_a_lock_and_says_so(counters: CounterStore) -> None:
    for _ in range(3):
        counters.attempt("k", THREE_PER_MINUTE)
    assert counters.reset("k") is True
    assert counters.locked_for("k") is None
    assert counters.reset("k") is False


def test_a_limit_of_one_locks_at_the_first_attempt(counters: CounterStore) -> None:
    once = Threshold(limit=1, window=MINUTE, lock=MINUTE)
    assert counters.attempt("k", once) == Attempt(granted=True, count=1, locks=True)
    assert not counters.attempt("k", once).granted


def test_fifty_concurrent_attempts_grant_exactly_the_limit(counters: CounterStore) -> None:
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
    assert all(a.locked_for == MINUTE for a in outcomes if not a.granted)
