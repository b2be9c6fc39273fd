"""Gunicorn settings for the provider: ``gunicorn -c python:idp.gunicorn_conf 'idp:create_app()'``.

Metrics: each worker writes its counters and histograms to files in ``PROMETHEUS_MULTIPROC_DIR``
and any worker's ``/metrics`` adds them all up (``idp.web.metrics``). Unless the variable is set,
each gunicorn gets a fresh folder of its own, removed when it exits; a folder given is emptied at
start, so counts never carry over from an earlier run. prometheus-client reads the variable when
it is first imported, so it is set here, in the master, before any worker exists; a worker that
dies is marked so, and its gauges leave the scrape.

Logs: gunicorn's own messages go through the same handler as the app's (``idp.logs``: JSON in
production). Gunicorn writes no access log: ``idp.web.access_log`` writes one line per request.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger

from idp.config import ConfigError, Settings
from idp.logs import configure_logging

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(environ: MutableMapping[str, str]) -> tuple[Path, bool]:
    """Return the metrics folder, emptied or new, and whether it was made here (to remove at exit)."""
    given = environ.get(MULTIPROCESS_VARIABLE)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        return folder, False
    folder = Path(tempfile.mkdtemp(prefix="idp-metrics-"))
    environ[MULTIPROCESS_VARIABLE] = str(folder)
    return folder, True


class GunicornLogger(Logger):  # type: ignore[misc]
    """Gunicorn's messages through the root logger's handler (``idp.logs``); no access log."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """The app logs each request itself (idp.web.access_log)."""


def _log_format() -> str:
    try:
        return Settings.from_env().log_format
    except ConfigError:
        return "text"  # each worker's create_app reports the faulty setting


METRICS_DIR, _MADE_HERE = prepare_multiprocess_dir(os.environ)
configure_logging(_log_format())
logging.getLogger("gunicorn.error").debug("metrics of this instance in %s", METRICS_DIR)

logger_class = GunicornLogger
accesslog = None


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    if _MADE_HERE:
        shutil.rmtree(METRICS_DIR, ignore_errors=True)
