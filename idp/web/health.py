"""Operations endpoints: liveness, readiness and metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from idp.web.context import services

bp = Blueprint("ops", __name__)

FALLBACK_ACTIVE = Gauge(
    "idp_redis_fallback_active", "1 while Redis is unavailable and counters are kept in the database."
)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    built = services()
    checks: dict[str, str] = {}
    try:
        built.session.execute(text("SELECT 1"))
        built.session.rollback()
        checks["database"] = "ok"
    except SQLAlchemyError:
        built.session.rollback()
        checks["database"] = "unavailable"
    client, health = built.counters.client, built.counters.health
    if client is None or health is None:
        checks["redis"] = "memory"
    else:
        try:
            client.ping()
            checks["redis"] = "ok"
            health.succeeded()
        except RedisError as error:
            checks["redis"] = "unavailable"
            health.failed(error)
    # Without Redis, sign-in goes on with the database's counters: degraded, still ready (taking
    # every process out of the load balancer would turn a Redis outage into a full one).
    checks["counters"] = "database fallback" if health is not None and health.fallback_active else "shared"
    ready = checks["database"] == "ok"
    status = "not ready" if not ready else "degraded" if checks["redis"] == "unavailable" else "ready"
    response = jsonify(status=status, checks=checks)
    response.status_code = 200 if ready else 503
    return response


@bp.get("/metrics")
def metrics_text() -> Response:
    """Prometheus text format: this process's counters, and whether it runs on the Redis fallback."""
    health = services().counters.health
    FALLBACK_ACTIVE.set(1 if health is not None and health.fallback_active else 0)
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)
