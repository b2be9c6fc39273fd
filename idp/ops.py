"""Operations endpoints: liveness, readiness and metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from idp import metrics
from idp.cache import redis_client, redis_health
from idp.extensions import db

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    checks: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
        checks["database"] = "ok"
    except SQLAlchemyError:
        db.session.rollback()
        checks["database"] = "unavailable"
    client = redis_client()
    health = redis_health()
    if client is None:
        checks["redis"] = "memory"
    else:
        try:
            client.ping()
            checks["redis"] = "ok"
            health.succeeded()
        except RedisError as error:
            checks["redis"] = "unavailable"
            health.failed(error)
    # Without Redis, sign-in goes on with this process's own counters: degraded, still ready
    # (taking every process out of the load balancer would turn a Redis outage into a full one).
    checks["counters"] = "per-process fallback" if health.fallback_active else "shared"
    ready = checks["database"] == "ok"
    status = "not ready" if not ready else "degraded" if checks["redis"] == "unavailable" else "ready"
    response = jsonify(status=status, checks=checks)
    response.status_code = 200 if ready else 503
    return response


@bp.get("/metrics")
def metrics_text() -> Response:
    """Prometheus text format: this process's counters and whether it runs on the Redis fallback."""
    health = redis_health()
    gauges = {
        "idp_redis_fallback_active": (
            "1 while Redis is unavailable and counters are kept in this process.",
            1.0 if health.fallback_active else 0.0,
        )
    }
    return Response(metrics.render(gauges), mimetype="text/plain; version=0.0.4")
