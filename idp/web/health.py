"""Liveness and readiness.

``/healthz`` answers 200 while the process serves requests, whatever its parts say: a restart
would not mend the database or Redis.

``/readyz`` says whether this process should get traffic::

    {"status": "ok" | "degraded" | "unavailable",
     "database": "ok" | "unavailable", "keys": "ok" | "unavailable", "redis": "ok" | "degraded"}

503 ("unavailable") when the database does not answer or no token can be signed; 200 otherwise.
While Redis is down the lockout and rate-limit counters fall back to the database, so the process
stays ready: 200, ``"redis": "degraded"``, status "degraded" (taking every process out of the load
balancer would turn a Redis outage into a full one). Without Redis configured (``memory://``,
development) ``redis`` is "ok".
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from joserfc.errors import JoseError
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from idp.keys.ring import KeyRing, UnknownSigningKey
from idp.keys.store import KeySetError
from idp.services import Services
from idp.web.context import services

log = logging.getLogger(__name__)

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    built = services()
    checks = {"database": _database(built), "keys": _keys(built.keys), "redis": _redis(built)}
    if "unavailable" in (checks["database"], checks["keys"]):
        status, code = "unavailable", 503
    elif checks["redis"] == "degraded":
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    response = jsonify(status=status, **checks)
    response.status_code = code
    response.headers["Cache-Control"] = "no-store"
    return response


def _database(built: Services) -> str:
    try:
        built.session.execute(text("SELECT 1"))
        return "ok"
    except SQLAlchemyError as error:
        log.warning("readiness: the database does not answer: %s", error.__class__.__name__)
        return "unavailable"
    finally:
        built.session.rollback()


def _keys(keys: KeyRing) -> str:
    """Return "ok" when the active keys sign and the key store still reads (a process
    that cannot read it would miss a rotation, and could not start again)."""
    try:
        for alg in keys.supported_algorithms() or ["RS256"]:
            keys.sign({"probe": True}, alg=alg)
        keys.check_store()
    except (UnknownSigningKey, KeySetError, JoseError, OSError, ValueError) as error:
        log.warning("readiness: the signing keys are unusable: %s", error)
        return "unavailable"
    return "ok"


def _redis(built: Services) -> str:
    client, health = built.counters.client, built.counters.health
    if client is None or health is None:
        return "ok"  # memory:// in one process: nothing to lose
    try:
        client.ping()
    except RedisError as error:
        health.failed(error)
        return "degraded"
    health.succeeded()
    return "ok"
