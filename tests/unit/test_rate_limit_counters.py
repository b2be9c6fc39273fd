"""The in-process rate-limit counters (``memory://`` and the Redis fallback): no app, no Redis."""

from __future__ import annotations

import threading

from idp.limits import MemoryCounters


class ManualClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_counts_within_a_window_and_starts_again_after_it() -> None:
    clock = ManualClock()
    counters = MemoryCounters(clock)
    assert [counters.incr("ip/signin", 60) for _ in range(3)] == [1, 2, 3]
    assert counters.get("ip/signin") == 3
    assert counters.get_expiry("ip/signin") == clock.now + 60
    clock.now += 59.9
    assert counters.incr("ip/signin", 60) == 4
    clock.now += 0.1  # the window opened by the first increment has ended
    assert counters.get("ip/signin") == 0
    assert counters.incr("ip/signin", 60) == 1
    assert counters.get_expiry("ip/signin") == clock.now + 60


def test_keys_count_apart_and_clear_forgets_one() -> None:
    counters = MemoryCounters(ManualClock())
    counters.incr("a", 60, amount=5)
    counters.incr("b", 60)
    counters.clear("a")
    assert (counters.get("a"), counters.get("b")) == (0, 1)


def test_the_table_stays_bounded_dropping_ended_windows_first() -> None:
    clock = ManualClock()
    counters = MemoryCounters(clock, max_keys=3)
    counters.incr("old", 1)
    counters.incr("kept-1", 600)
    counters.incr("kept-2", 600)
    clock.now += 2
    counters.incr("new", 600)
    assert [counters.get(k) for k in ("old", "kept-1", "kept-2", "new")] == [0, 1, 1, 1]
    counters.incr("newer", 600)  # all live: the oldest key gives way
    assert [counters.get(k) for k in ("kept-1", "kept-2", "new", "newer")] == [0, 1, 1, 1]


def test_counting_starts_no_thread() -> None:
    # limits' MemoryStorage started a timer thread on nearly every increment (a sign-in's cost).
    counters = MemoryCounters()
    before = threading.active_count()
    for n in range(200):
        counters.incr(f"ip-{n % 7}", 60)
    assert threading.active_count() == before


def test_concurrent_increments_are_all_counted() -> None:
    counters = MemoryCounters()

    def hammer() -> None:
        for _ in range(2000):
            counters.incr("shared", 60)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counters.get("shared") == 8000
