"""``idp worker``'s own ``/metrics``, on ``IDP_WORKER_METRICS_PORT``.

The worker is a process of its own (a container, a pod): the mail and back-channel counters it
keeps (``idp_mails_total``, ``idp_backchannel_retries_total``) are in no instance's scrape. A
thread serves them under the instance's rules: a bearer of ``IDP_METRICS_TOKEN``, or a client in
``IDP_METRICS_ALLOW`` (the peer's address: no proxy stands in front of it); anyone else gets 403.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from idp.config import ConfigError, Settings
from idp.metrics import may_read_metrics


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """A scrape every few seconds is no news."""


def metrics_app(settings: Settings) -> WSGIApplication:
    """The WSGI app answering ``GET /metrics`` with this process's metrics."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"Not Found\n"]
        if not may_read_metrics(
            token=settings.metrics_token,
            allow=settings.metrics_allow,
            authorization=environ.get("HTTP_AUTHORIZATION"),
            addresses=(environ.get("REMOTE_ADDR"),),
        ):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"Forbidden\n"]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Cache-Control", "no-store")])
        return [generate_latest(REGISTRY)]

    return app


def serve_worker_metrics(settings: Settings, *, host: str = "") -> WSGIServer | None:
    """Serve ``/metrics`` from a daemon thread on ``IDP_WORKER_METRICS_PORT`` (all addresses),
    or nothing when it is 0; ``shutdown()`` the server returned to stop."""
    if not settings.worker_metrics_port:
        return None
    try:
        server = make_server(
            host, settings.worker_metrics_port, metrics_app(settings), handler_class=_QuietHandler
        )
    except OSError as error:
        raise ConfigError(
            f"IDP_WORKER_METRICS_PORT={settings.worker_metrics_port} cannot be served: {error}"
        ) from None
    threading.Thread(target=server.serve_forever, name="idp-worker-metrics", daemon=True).start()
    return server
