"""The line each gunicorn worker of the e2e tests logs once it has loaded the app."""

from __future__ import annotations

READY_LINE = "e2e: worker ready"
