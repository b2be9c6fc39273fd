"""/revoke (RFC 7009) and /introspect (RFC 7662): each client about its own tokens; revoking either
kind of token ends its family; tokens of revoked keys, other providers or other clients are inactive."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from idp import create_app
from idp.extensions import db
from tests.functional.tokens import (
    OFFLINE_SCOPE,
    audit_names,
    introspect,
    refresh,
    revoke,
    sign_in_and_redeem,
    unique_username,
)


@pytest.fixture
def username(make_account) -> str:
    name = unique_username()
    make_account(username=name)
    return name


@pytest.fixture
def portal(make_client):
    return make_client(scope=OFFLINE_SCOPE)


@pytest.fixture
def tokens(client, portal, username):
    return sign_in_and_redeem(client, portal, username)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def is_active(client, portal, token: str) -> bool:
    response = introspect(client, portal.client_id, portal.client_secret, token)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    return bool(response.get_json()["active"])


# --- introspection ----------------------------------------------------------------------------
def test_introspecting_an_access_token_describes_it(client, portal, tokens, clock):
    response = introspect(client, portal.client_id, portal.client_secret, tokens["access_token"])
    body = response.get_json()
    now = int(clock.now().timestamp())
    assert body["active"] is True
    assert body["client_id"] == portal.client_id
    assert body["token_type"] == "Bearer"
    assert set(body["scope"].split()) == set(OFFLINE_SCOPE.split())
    assert body["iss"] == "http://localhost"
    assert body["exp"] == now + 600 and body["iat"] == now
    assert body["sub"] and body["jti"]
    assert "fid" not in body


def test_introspecting_a_refresh_token_describes_it(client, portal, tokens, clock):
    body = introspect(client, portal.client_id, portal.client_secret, tokens["refresh_token"]).get_json()
    assert body["active"] is True
    assert body["client_id"] == portal.client_id
    assert body["exp"] == int((clock.now() + timedelta(days=14)).timestamp())
    assert "token_type" not in body


def test_hint_does_not_change_the_answer(client, portal, tokens):
    for hint in ("access_token", "refresh_token"):
        for value in (tokens["access_token"], tokens["refresh_token"]):
            response = introspect(client, portal.client_id, portal.client_secret, value, token_type_hint=hint)
            assert response.get_json()["active"] is True


def test_another_clients_token_is_inactive_to_introspect(client, make_client, tokens):
    other = make_client(name="Other Portal")
    for value in (tokens["access_token"], tokens["refresh_token"]):
        response = introspect(client, other.client_id, other.client_secret, value)
        assert response.status_code == 200
        assert response.get_json() == {"active": False}


def test_expired_access_token_and_rotated_refresh_token_are_inactive(client, portal, tokens, clock):
    rotated = refresh(client, portal.client_id, portal.client_secret, tokens["refresh_token"]).get_json()
    assert not is_active(client, portal, tokens["refresh_token"])
    assert is_active(client, portal, rotated["refresh_token"])
    clock.advance(timedelta(seconds=601))
    assert not is_active(client, portal, tokens["access_token"])


@pytest.mark.parametrize(
    "value",
    ["", "garbage", "a.b.c", "rt_" + "Z" * 43, "x" * 20_000, "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."],
    ids=["empty", "garbage", "three-dots", "unknown-refresh", "huge", "alg-none"],
)
def test_unknown_or_malformed_tokens_are_inactive(client, portal, tokens, value):
    response = introspect(client, portal.client_id, portal.client_secret, value)
    assert response.status_code == 200
    assert response.get_json() == {"active": False}


def test_token_of_a_key_that_is_not_ours_is_inactive(client, portal, tokens):
    foreign = RSAKey.generate_key(2048, parameters={"kid": "foreign"})
    forged = jwt.encode(
        {"alg": "RS256", "kid": "foreign", "typ": "at+jwt"},
        {"iss": "http://localhost", "sub": "x", "client_id": portal.client_id, "exp": 2**31},
        foreign,
    )
    assert not is_active(client, portal, forged)


def test_id_token_is_not_an_active_access_token(client, portal, tokens):
    assert not is_active(client, portal, tokens["id_token"])


def test_introspection_needs_client_authentication(client, portal, tokens):
    response = client.post("/introspect", data={"token": tokens["access_token"]})
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    wrong = introspect(client, portal.client_id, "cs_wrong", tokens["access_token"])
    assert wrong.status_code == 401


def test_public_client_may_not_introspect(client, make_client, username):
    app = make_client(public=True, scope=OFFLINE_SCOPE)
    issued = sign_in_and_redeem(client, app, username)
    response = introspect(client, app.client_id, None, issued["access_token"])
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] == "invalid_client"


def test_introspection_without_token_is_invalid_request(client, portal):
    from tests.functional.oidc import basic_auth

    response = client.post("/introspect", data={}, headers=basic_auth(portal.client_id, portal.client_secret))
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_introspection_of_a_token_signed_by_a_revoked_key_is_inactive(
    settings, clock, tmp_path: Path, make_account, make_client
):
    # A key set of its own: revoking the shared test key would break every other test.
    app = create_app(replace(settings, keys_dir=tmp_path / "keys"), clock=clock)
    app.config["TESTING"] = True
    with app.app_context():
        http = app.test_client()
        name = unique_username()
        make_account(username=name)
        portal = make_client(scope=OFFLINE_SCOPE)
        issued = sign_in_and_redeem(http, portal, name)
        assert is_active(http, portal, issued["access_token"])
        keys = app.extensions["idp.services"].keys
        kid = next(r.kid for r in keys.records() if r.alg == "RS256" and r.state == "active")
        result = app.test_cli_runner().invoke(args=["keys", "revoke", kid])
        assert result.exit_code == 0, result.output
        keys.reload()
        assert not is_active(http, portal, issued["access_token"])
        assert http.get("/userinfo", headers=bearer(issued["access_token"])).status_code == 401
        db.session.remove()
        db.engine.dispose()


# --- revocation -------------------------------------------------------------------------------
def test_revoking_a_refresh_token_ends_it_and_the_access_tokens_of_its_family(client, portal, tokens):
    response = revoke(client, portal.client_id, portal.client_secret, tokens["refresh_token"])
    assert response.status_code == 200
    assert not is_active(client, portal, tokens["refresh_token"])
    assert not is_active(client, portal, tokens["access_token"])
    assert client.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 401
    again = refresh(client, portal.client_id, portal.client_secret, tokens["refresh_token"])
    assert again.get_json()["error"] == "invalid_grant"
    assert "refresh_token_family.revoked" in audit_names()


def test_revoking_an_access_token_ends_its_family_too(client, portal, tokens):
    response = revoke(
        client, portal.client_id, portal.client_secret, tokens["access_token"], token_type_hint="access_token"
    )
    assert response.status_code == 200
    assert not is_active(client, portal, tokens["access_token"])
    assert not is_active(client, portal, tokens["refresh_token"])


def test_revoking_twice_or_an_unknown_token_answers_200(client, portal, tokens):
    for value in (tokens["refresh_token"], tokens["refresh_token"], "rt_unknown", "garbage"):
        assert revoke(client, portal.client_id, portal.client_secret, value).status_code == 200


def test_another_client_cannot_revoke_a_token(client, make_client, portal, tokens):
    other = make_client(name="Other Portal")
    response = revoke(client, other.client_id, other.client_secret, tokens["refresh_token"])
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"
    assert is_active(client, portal, tokens["refresh_token"])


def test_public_client_revokes_its_own_token_with_its_client_id(client, make_client, username):
    app = make_client(public=True, scope=OFFLINE_SCOPE)
    issued = sign_in_and_redeem(client, app, username)
    assert revoke(client, app.client_id, None, issued["refresh_token"]).status_code == 200
    again = refresh(client, app.client_id, None, issued["refresh_token"])
    assert again.get_json()["error"] == "invalid_grant"


def test_revocation_needs_client_authentication(client, portal, tokens):
    response = client.post("/revoke", data={"token": tokens["refresh_token"]})
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] == "invalid_client"
    assert is_active(client, portal, tokens["refresh_token"])


def test_unknown_token_type_hint_is_only_a_hint(client, portal, tokens):
    body = introspect(
        client, portal.client_id, portal.client_secret, tokens["access_token"], token_type_hint="x"
    )
    assert body.get_json()["active"] is True
    response = revoke(
        client, portal.client_id, portal.client_secret, tokens["refresh_token"], token_type_hint="x"
    )
    assert response.status_code == 200
    assert not is_active(client, portal, tokens["refresh_token"])


def test_revocation_without_token_is_invalid_request(client, portal):
    from tests.functional.oidc import basic_auth

    response = client.post("/revoke", data={}, headers=basic_auth(portal.client_id, portal.client_secret))
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_revoke_and_introspect_refuse_get(client):
    assert client.get("/revoke").status_code == 405
    assert client.get("/introspect").status_code == 405


def test_unreadable_basic_credentials_are_invalid_client_not_500(client):
    for path in ("/revoke", "/introspect"):
        response = client.post(path, data={"token": "x"}, headers={"Authorization": "Basic w6k6w6k="})
        assert response.status_code == 401, path
        assert response.get_json()["error"] == "invalid_client"
