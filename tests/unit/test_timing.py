"""The timing check itself: it sees a gap of the size it guards against, and no gap where none is."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.timing import paired_gap, steady_gaps


def spin(seconds: float) -> Callable[[], None]:
    """Work that takes `seconds` of CPU time on a quiet machine; sleep would round to the scheduler."""

    def work() -> None:
        until = time.perf_counter() + seconds
        while time.perf_counter() < until:
            pass

    return work


def test_a_fifth_more_work_shows_as_a_gap_in_every_measurement():
    gaps = steady_gaps(spin(0.0012), spin(0.001), limit=0.10, pairs=60)

    assert len(gaps) == 3 and all(gap > 0.10 for gap in gaps), gaps


def test_the_gap_has_a_sign():
    assert paired_gap(spin(0.001), spin(0.0012), pairs=60) < -0.10


def test_the_same_work_shows_no_gap():
    gaps = steady_gaps(spin(0.001), spin(0.001), limit=0.10, pairs=60)

    assert abs(gaps[-1]) < 0.10, gaps
