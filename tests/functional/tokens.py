"""Helpers for the refresh, revocation, introspection and logout tests: a portal's side of each call."""

from __future__ import annotations

import secrets
from typing import Any

from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from idp.audit import AuditEvent
from idp.extensions import db
from tests.conftest import AuthRequest
from tests.functional.oidc import authorize_as, basic_auth, redeem

OFFLINE_SCOPE = "openid profile email students offline_access"


def unique_username() -> str:
    return f"user-{secrets.token_hex(4)}"


def token_call(
    client: FlaskClient, path: str, client_id: str, secret: str | None, **form: str
) -> TestResponse:
    """POST to a client-authenticated endpoint: Basic when confidential, client_id when public."""
    if secret:
        return client.post(path, data=form, headers=basic_auth(client_id, secret))
    return client.post(path, data={**form, "client_id": client_id})


def refresh(
    client: FlaskClient, client_id: str, secret: str | None, refresh_token: str, **extra: str
) -> TestResponse:
    return token_call(
        client, "/token", client_id, secret, grant_type="refresh_token", refresh_token=refresh_token, **extra
    )


def introspect(
    client: FlaskClient, client_id: str, secret: str | None, token: str, **extra: str
) -> TestResponse:
    return token_call(client, "/introspect", client_id, secret, token=token, **extra)


def revoke(client: FlaskClient, client_id: str, secret: str | None, token: str, **extra: str) -> TestResponse:
    return token_call(client, "/revoke", client_id, secret, token=token, **extra)


def sign_in_and_redeem(
    client: FlaskClient, portal: Any, username: str, *, scope: str = OFFLINE_SCOPE, **extra: str
) -> dict[str, Any]:
    """Run a code flow for ``portal`` and return the token response (asserting it succeeded)."""
    auth = AuthRequest(portal.client_id, scope=scope, extra=extra)
    code = authorize_as(client, auth, username)["code"]
    response = redeem(client, auth, code, portal.client_secret)
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def verified_claims(client: FlaskClient, token: str, **expected: Any) -> dict[str, Any]:
    """Verify ``token`` against the provider's JWKS (RS256/ES256 only) and return its claims."""
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    decoded = jwt.decode(token, keys, algorithms=["RS256", "ES256"])
    for name, value in expected.items():
        assert decoded.claims.get(name) == value, (name, decoded.claims.get(name), value)
    return dict(decoded.claims)


def header(client: FlaskClient, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    return dict(jwt.decode(token, keys, algorithms=["RS256", "ES256"]).header)


def audit_names() -> list[str]:
    db.session.rollback()
    return list(db.session.execute(select(AuditEvent.name).order_by(AuditEvent.occurred_at)).scalars())


def count(model: Any, *where: Any) -> int:
    db.session.rollback()
    query = select(func.count()).select_from(model)
    for condition in where:
        query = query.where(condition)
    return int(db.session.execute(query).scalar_one())
