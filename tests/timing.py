"""Whether two requests take the same time, measured so that the machine's noise cannot decide.

A shared 2-vCPU machine drifts by more than 10% within a second, and a garbage collection can land
on one side of a strict alternation every time. So the pairs run in a random order with the
collector off, and the gap is the median of paired differences: drift between pairs cancels out.
A gap is reported only when it shows in every one of a few independent measurements, which noise
does not do and a real difference (one more query, a mail sent inline) always does.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
from collections.abc import Callable


def paired_gap(first: Callable[[], object], second: Callable[[], object], *, pairs: int) -> float:
    """How much longer `first` takes than `second`, as a fraction of their median time."""
    sides = (first, second)
    order = random.Random()
    differences: list[float] = []
    durations: list[float] = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(pairs):
            timed = [0.0, 0.0]
            for index in order.sample((0, 1), 2):
                started = time.perf_counter()
                sides[index]()
                timed[index] = time.perf_counter() - started
            differences.append(timed[0] - timed[1])
            durations.extend(timed)
    finally:
        gc.enable()
    return statistics.median(differences) / statistics.median(durations)


def steady_gaps(
    first: Callable[[], object],
    second: Callable[[], object],
    *,
    limit: float,
    pairs: int = 100,
    tries: int = 3,
) -> list[float]:
    """The gaps measured until one falls within `limit`: all of them are outside it only for a real gap."""
    gaps: list[float] = []
    for _ in range(tries):
        gaps.append(paired_gap(first, second, pairs=pairs))
        if abs(gaps[-1]) < limit:
            break
    return gaps
