"""Durations as operators type them: ``30s``, ``15m``, ``12h``, ``90d``."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"(\d{1,9})([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class InvalidDuration(ValueError):
    pass


def parse_duration(text: str) -> timedelta:
    """Return the ``timedelta`` that ``text`` (a whole number and s, m, h or d) names."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidDuration(f"{text!r} is not a duration; use a whole number and s, m, h or d: 90d, 12h")
    amount, unit = match.groups()
    if int(amount) == 0:
        raise InvalidDuration(f"{text!r} is not a duration; it must be longer than zero, such as 90d")
    return timedelta(**{_UNITS[unit]: int(amount)})


def describe(delta: timedelta) -> str:
    """Return ``delta`` the way an operator reads it: ``90d``, ``3h 5m``, ``42s``."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts[:2])
