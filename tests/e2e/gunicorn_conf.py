"""Gunicorn settings for the e2e tests: one log line per worker once it has loaded the app."""

from __future__ import annotations

from typing import Any

READY_LINE = "e2e: worker ready"


def post_worker_init(worker: Any) -> None:
    # Gunicorn calls this after the worker has built the app (create_app, keys included),
    # so the harness can wait for every worker, not just the first one to answer.
    worker.log.info("%s (pid %s)", READY_LINE, worker.pid)
