"""The log lines a test's requests write, as the production handler renders them (JSON)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from idp.logs import configure_logging


class JsonLog:
    """The lines written so far, each parsed."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        # Every line is one JSON object: json.loads fails the test on any other.
        return [json.loads(line) for line in self.text().splitlines()]

    def requests(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("logger") == "idp.request"]

    def audit(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("audit") is True]


@contextmanager
def json_log() -> Iterator[JsonLog]:
    """Render the process's log as JSON into memory, then back to text on stdout."""
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    try:
        yield JsonLog(stream)
    finally:
        configure_logging("text")
