"""Process-wide counters in the Prometheus text format (``/metrics``), without Flask.

Each gunicorn worker counts for itself, as Prometheus expects of one scrape target per
process; add the processes up on the Prometheus side (``sum by (job)``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping


class Counter:
    """A monotonically increasing count, optionally split by one label."""

    def __init__(self, name: str, help_text: str, label: str | None = None) -> None:
        self.name = name
        self.help_text = help_text
        self.label = label
        self._values: dict[str, float] = {} if label else {"": 0.0}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, label_value: str = "") -> None:
        with self._lock:
            self._values[label_value] = self._values.get(label_value, 0.0) + amount

    def value(self, label_value: str = "") -> float:
        with self._lock:
            return self._values.get(label_value, 0.0)

    def samples(self) -> list[tuple[str, float]]:
        with self._lock:
            items = sorted(self._values.items())
        if self.label is None:
            return [(self.name, value) for _, value in items]
        return [(f'{self.name}{{{self.label}="{_escape(key)}"}}', value) for key, value in items]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


SIGNIN_FAILURES = Counter("idp_signin_failures_total", "Sign-ins refused for a wrong username or password.")
SIGNIN_LOCKED = Counter(
    "idp_signin_locked_total", "Sign-ins refused without a password check because the username was locked."
)
LOCKOUTS = Counter("idp_lockouts_total", "Usernames or devices locked after too many failures.", "scope")
ARGON2_VERIFICATIONS = Counter("idp_argon2_verifications_total", "argon2id verifications computed.")
ARGON2_BUSY = Counter(
    "idp_argon2_busy_total", "Requests answered 503 because every argon2 slot of the process was taken."
)
RATE_LIMITED = Counter("idp_rate_limited_total", "Requests answered 429 by a per-IP rate limit.", "limit")
REDIS_ERRORS = Counter("idp_redis_errors_total", "Redis commands that failed and fell back to memory.")

COUNTERS: tuple[Counter, ...] = (
    SIGNIN_FAILURES,
    SIGNIN_LOCKED,
    LOCKOUTS,
    ARGON2_VERIFICATIONS,
    ARGON2_BUSY,
    RATE_LIMITED,
    REDIS_ERRORS,
)


def render(gauges: Mapping[str, tuple[str, float]], counters: Iterable[Counter] = COUNTERS) -> str:
    """Return the exposition text: ``gauges`` maps a name to (help, value)."""
    lines: list[str] = []
    for name, (help_text, value) in gauges.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {_number(value)}"]
    for counter in counters:
        lines += [f"# HELP {counter.name} {counter.help_text}", f"# TYPE {counter.name} counter"]
        lines += [f"{sample} {_number(value)}" for sample, value in counter.samples()]
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)
