"""Gunicorn settings for the e2e tests: the production ones, and one log line per worker once it
has loaded the app.

Imported by gunicorn only: importing ``idp.gunicorn_conf`` sets up the metrics folder and the
logging of the process that imports it.
"""

from __future__ import annotations

from typing import Any

from idp.gunicorn_conf import accesslog, child_exit, logger_class, on_exit
from tests.e2e.ready import READY_LINE

__all__ = ["accesslog", "child_exit", "logger_class", "on_exit", "post_worker_init"]


def post_worker_init(worker: Any) -> None:
    # Gunicorn calls this after the worker has built the app (create_app, keys included),
    # so the harness can wait for every worker, not just the first one to answer.
    worker.log.info("%s (pid %s)", READY_LINE, worker.pid)
