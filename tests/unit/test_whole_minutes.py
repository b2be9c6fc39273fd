"""Waits told to people are whole minutes, rounded up, never none (issue 16)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from idp.counters.store import whole_minutes


@pytest.mark.parametrize(
    ("delta", "minutes"),
    [
        (timedelta(seconds=-5), 1),
        (timedelta(microseconds=1), 1),
        (timedelta(seconds=59), 1),
        (timedelta(seconds=60), 1),
        (timedelta(seconds=60, microseconds=1), 2),
        (timedelta(seconds=90), 2),
        (timedelta(minutes=30), 30),
        (timedelta(minutes=30, seconds=1), 31),
        (timedelta(hours=1) - timedelta(milliseconds=3), 60),
    ],
)
def test_whole_minutes_rounds_up_with_a_floor_of_one(delta: timedelta, minutes: int) -> None:
    assert whole_minutes(delta) == minutes
