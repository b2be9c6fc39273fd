"""Operations endpoints: liveness and readiness."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from idp.cache import redis_client
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
    if client is None:
        checks["redis"] = "memory"
    else:
        try:
            client.ping()
            checks["redis"] = "ok"
        except RedisError:
            checks["redis"] = "unavailable"
    ready = checks["database"] == "ok" and checks["redis"] != "unavailable"
    response = jsonify(status="ready" if ready else "not ready", checks=checks)
    response.status_code = 200 if ready else 503
    return response
