"""The authorization code flow over HTTP, from /authorize to /userinfo."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import func, select

from idp.audit import AuditEvent
from idp.extensions import db
from idp.oauth.models import AuthorizationCode
from tests.conftest import AuthRequest
from tests.functional.oidc import authorize_as, redeem


def verify_id_token(client: FlaskClient, id_token: str, *, client_id: str, alg: str = "RS256") -> Any:
    jwks = client.get("/jwks.json").get_json()
    token = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=[alg])
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": "http://localhost"},
        aud={"essential": True, "value": client_id},
        exp={"essential": True},
    )
    registry.validate(token.claims)
    return token


def test_parent_signs_in_and_portal_receives_linked_students(
    client, make_account, make_student, make_client, clock
):
    from idp.web.context import services

    parent = make_account(username="Dana.Rivera")
    services().schools().create(code="LES", name="Lincoln Elementary School")
    zoe = make_student(sis_id="100234", first_name="Zoe", last_name="Rivera", school_code="WMS")
    adam = make_student(sis_id="100235", first_name="Adam", last_name="Rivera")
    guardianship = services().guardianship()
    guardianship.link(parent, zoe, "mother")
    guardianship.link(parent, adam, "Mother")
    db.session.commit()
    portal = make_client()
    auth = AuthRequest(portal.client_id)

    result = authorize_as(client, auth, "  dana.rivera ")
    assert result["state"] == auth.state
    assert result["code"].startswith("ac_")

    response = redeem(client, auth, result["code"], portal.client_secret)
    assert response.status_code == 200, response.get_json()
    tokens = response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    id_token = verify_id_token(client, tokens["id_token"], client_id=portal.client_id)
    claims = id_token.claims
    assert id_token.header["kid"]
    assert claims["sub"] == parent.id != parent.username
    assert claims["nonce"] == auth.nonce
    assert claims["auth_time"] == int(clock.now().timestamp())
    assert claims["at_hash"]
    assert claims["account_type"] == "parent"
    assert claims["student_ids"] == ["100235", "100234"]  # Adam before Zoe: tab order
    assert claims["students"][0] == {
        "id": "100235",
        "given_name": "Adam",
        "family_name": "Rivera",
        "school_id": "LES",
        "school_name": "Lincoln Elementary School",
        "relationship": "Mother",
    }
    assert claims["primary_student_id"] == "100234"  # the first one linked
    assert "last_login_at" not in claims  # first sign-in

    info = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 200
    assert info.get_json()["sub"] == parent.id
    assert info.get_json()["student_ids"] == ["100235", "100234"]
    names = set(db.session.execute(select(AuditEvent.name)).scalars())
    assert {"signin.succeeded", "authorization_code.issued", "access_token.issued"} <= names


def test_reused_code_is_invalid_grant(client, make_account, make_client):
    make_account(username="ana")
    portal = make_client()
    auth = AuthRequest(portal.client_id)
    code = authorize_as(client, auth, "ana")["code"]
    assert redeem(client, auth, code, portal.client_secret).status_code == 200
    again = redeem(client, auth, code, portal.client_secret)
    assert again.status_code == 400
    assert again.get_json()["error"] == "invalid_grant"


def test_wrong_secret_is_401_and_leaves_code_usable(client, make_account, make_client):
    make_account(username="ana")
    portal = make_client()
    auth = AuthRequest(portal.client_id)
    code = authorize_as(client, auth, "ana")["code"]
    wrong = redeem(client, auth, code, "cs_wrong")
    assert wrong.status_code == 401
    assert wrong.get_json()["error"] == "invalid_client"
    assert "WWW-Authenticate" in wrong.headers
    assert redeem(client, auth, code, portal.client_secret).status_code == 200


def test_wrong_or_missing_verifier_is_refused_and_leaves_code_usable(client, make_account, make_client):
    make_account(username="ana")
    portal = make_client()
    auth = AuthRequest(portal.client_id)
    code = authorize_as(client, auth, "ana")["code"]
    wrong = redeem(client, auth, code, portal.client_secret, code_verifier="x" * 43)
    assert wrong.status_code == 400 and wrong.get_json()["error"] == "invalid_grant"
    missing = redeem(client, auth, code, portal.client_secret, code_verifier=None)
    assert missing.status_code == 400 and missing.get_json()["error"] == "invalid_request"
    used = db.session.execute(select(func.count()).where(AuthorizationCode.used_at.is_not(None))).scalar()
    assert used == 0
    assert redeem(client, auth, code, portal.client_secret).status_code == 200
