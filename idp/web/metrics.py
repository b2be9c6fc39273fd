"""``/metrics``: Prometheus's text format for the whole instance, to those allowed to read it.

Under gunicorn the counters and histograms of ``idp.metrics`` come from every worker's files in
``PROMETHEUS_MULTIPROC_DIR`` (``idp.gunicorn_conf`` sets it up), so one scrape covers the
instance; in a single process (``flask run``, the tests) they come from the process itself.
The outbox's backlog and the signing keys' age are read when the scrape comes.

Who may read it: a request with ``Authorization: Bearer <IDP_METRICS_TOKEN>``, or one whose peer
address and client address (once ``IDP_TRUSTED_PROXIES`` has been applied) are both in
``IDP_METRICS_ALLOW``. Anyone else gets 403.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from datetime import datetime

from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from idp.audit import AuditEvent
from idp.clock import Clock
from idp.db import DbSession
from idp.keys.ring import KeyRing
from idp.mail.delivery import MAX_ATTEMPTS
from idp.mail.models import OutboundEmail
from idp.metrics import (
    AUTHORIZE_DURATION,
    REDIS_FALLBACK_ACTIVE,
    SIGNIN_DURATION,
    SIGNINS,
    TOKEN_DURATION,
    TOKENS_ISSUED,
    USERINFO_DURATION,
    may_read_metrics,
)
from idp.web.context import services

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

SIGNIN_ENDPOINT = "accounts.signin"
TOKEN_ENDPOINT = "oauth.token"  # noqa: S105 (an endpoint's name)
LATENCY = {
    TOKEN_ENDPOINT: TOKEN_DURATION,
    "oauth.authorize": AUTHORIZE_DURATION,
    "oauth.userinfo": USERINFO_DURATION,
}
# The grants a client may use (idp.oauth.server); anything else is no label of ours.
GRANTS = frozenset({"authorization_code", "refresh_token", "client_credentials"})


# --- what a request adds ------------------------------------------------------------------------
def signin_outcome(status: int, events: Iterable[AuditEvent]) -> str:
    """Name how a sign-in form was answered, from its status and the audit events it recorded."""
    if status == 429:
        return "rate_limited"
    if status == 503:
        return "busy"
    names = {event.name: event for event in events}
    if "signin.succeeded" in names:
        return "success"
    if "signin.password_change_required" in names:
        return "password_change_required"
    refused = names.get("signin.refused")
    if refused is not None:
        return "locked" if refused.details.get("reason") == "locked" else "refused"
    if "signin.failed" in names:
        return "failure"
    return "invalid"  # the form itself was refused (CSRF, empty fields)


def observe_request(
    endpoint: str | None,
    method: str,
    status: int,
    seconds: float,
    events: list[AuditEvent],
    form: dict[str, str],
) -> None:
    """Count an answered request in the latency histograms and the sign-in and token counters."""
    if endpoint == SIGNIN_ENDPOINT and method == "POST":
        SIGNIN_DURATION.observe(seconds)
        SIGNINS.labels(outcome=signin_outcome(status, events)).inc()
    elif endpoint in LATENCY:
        LATENCY[endpoint].observe(seconds)
    if endpoint == TOKEN_ENDPOINT and status == 200 and form.get("grant_type") in GRANTS:
        TOKENS_ISSUED.labels(grant=form["grant_type"]).inc()


# --- what a scrape reads ------------------------------------------------------------------------
class StateCollector(Collector):
    """Gauges of shared state, read at scrape time: the outbox's backlog, the signing keys' age."""

    def __init__(self, session: DbSession, keys: KeyRing, clock: Clock) -> None:
        self.session = session
        self.keys = keys
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock.now()
        yield from self._outbox(now)
        age = GaugeMetricFamily(
            "idp_signing_key_age_seconds", "Age of each active signing key.", labels=["alg", "kid"]
        )
        for record in self.keys.records():
            if record.state == "active":
                age.add_metric([record.alg, record.kid], (now - record.created_at).total_seconds())
        yield age

    def _outbox(self, now: datetime) -> Iterator[Metric]:
        # Waiting: not sent and not given up (idp.mail.delivery).
        waiting = (OutboundEmail.sent_at.is_(None), OutboundEmail.attempts < MAX_ATTEMPTS)
        try:
            depth, oldest = self.session.execute(
                select(func.count(), func.min(OutboundEmail.created_at)).where(*waiting)
            ).one()
        except SQLAlchemyError as error:
            # Without the database the scrape still answers, without these two.
            log.warning("/metrics: the outbox could not be read (%s)", error.__class__.__name__)
            return
        finally:
            self.session.rollback()
        yield GaugeMetricFamily("idp_outbox_depth", "Messages waiting to be sent.", value=depth)
        oldest_seconds = (now - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "idp_outbox_oldest_seconds", "Age of the oldest message waiting to be sent.", value=oldest_seconds
        )


def exposition() -> bytes:
    """The instance's metrics in Prometheus's text format."""
    built = services()
    health = built.counters.health
    REDIS_FALLBACK_ACTIVE.set(1 if health is not None and health.fallback_active else 0)
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        counted = generate_latest(registry)
    else:
        counted = generate_latest(REGISTRY)
    return counted + generate_latest(StateCollector(built.session, built.keys, built.clock))


def _peer_address() -> str | None:
    original: dict[str, str | None] = request.environ.get("werkzeug.proxy_fix.orig", {})
    return original.get("REMOTE_ADDR", request.remote_addr)


@bp.get("/metrics")
def metrics_text() -> Response:
    settings = services().settings
    if not may_read_metrics(
        token=settings.metrics_token,
        allow=settings.metrics_allow,
        authorization=request.headers.get("Authorization"),
        # Both the client ProxyFix found (IDP_TRUSTED_PROXIES) and the peer: a forged
        # X-Forwarded-For from inside the network, or any client of a proxy on this host, is
        # refused unless both addresses are listed.
        addresses=(request.remote_addr, _peer_address()),
    ):
        return Response("Forbidden\n", status=403, mimetype="text/plain")
    response = Response(exposition(), mimetype=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response
