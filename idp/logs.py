"""Logging for every process: INFO and up, on stdout for the servers and on stderr for ``idp``
commands (the worker included), whose stdout is their output.

structlog renders both its own events (the request lines of ``idp.web.access_log``) and the
standard library's records (``idp.audit``, gunicorn, Redis outages…) through one handler: one JSON
object per line in production (``IDP_LOG_FORMAT=json``), readable text otherwise. What is bound
with ``structlog.contextvars`` (the request id) goes on every line logged while it is bound.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor

LOG_FORMATS = ("json", "text")


class ProcessStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Write to the process's own stdout or stderr, or to ``stream`` (a test's).

    Never to ``sys.stdout`` as it is at the moment: a command's output (click's test runner, a
    capture) must not receive log lines.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self._fixed = stream

    @property
    def stream(self) -> TextIO:
        if self._fixed is not None:
            return self._fixed
        chosen = sys.__stderr__ if _destination == "stderr" else sys.__stdout__
        return chosen or sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        # logging.StreamHandler.__init__ assigns sys.stderr; the property decides instead.
        pass


# Servers log on stdout; ``idp`` commands on stderr, their stdout being their output (--json).
_destination = "stdout"


def send_logs_to_stderr() -> None:
    """Log on stderr from now on (the ``idp`` command)."""
    global _destination
    _destination = "stderr"


def _add_pid(_logger: Any, _method: str, event: EventDict) -> EventDict:
    # Which gunicorn worker wrote the line.
    event.setdefault("pid", os.getpid())
    return event


# Added to every line, structlog's and the standard library's alike.
SHARED_PROCESSORS: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _add_pid,
]

# structlog's events become standard library records, rendered by the handler below. Done at
# import, so that a process which never calls ``configure_logging`` still follows the standard
# library's levels rather than structlog's default of printing everything.
structlog.configure(
    processors=[
        structlog.stdlib.filter_by_level,
        *SHARED_PROCESSORS,
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger that writes through the standard library's logger ``name``."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def configure_logging(log_format: str, *, stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Send ``level`` and up to stdout (stderr for commands, or ``stream``) as JSON lines or text;
    safe to call again."""
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if log_format == "json":
        final.append(structlog.processors.format_exc_info)  # a traceback as one string, in the line
        final.append(structlog.processors.JSONRenderer())
    else:
        # A plain traceback: the rich one prints each frame's local variables, secrets among them
        # (an SMTP password in the transport), and takes seconds to render.
        final.append(
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
        )
    handler = ProcessStreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=SHARED_PROCESSORS, processors=final)
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, ProcessStreamHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Alembic (through Flask-Migrate) announces its plugins at INFO in every process that loads it.
    logging.getLogger("alembic.runtime.plugins").setLevel(max(level, logging.WARNING))
