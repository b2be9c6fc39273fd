"""Refresh tokens over HTTP: offline access granted only where it may be, rotation on every use,
reuse revoking the family, idle and absolute lives, and every bad refresh a clean OAuth error."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from idp.accounts.models import Account, AccountStatus
from idp.extensions import db
from idp.oauth.models import RefreshToken, RefreshTokenFamily
from idp.tokens import secret_hash
from tests.conftest import AuthRequest
from tests.functional.oidc import authorize_as, redeem
from tests.functional.test_consent_and_prompts import answer_consent, is_consent_page, through_signin
from tests.functional.tokens import (
    OFFLINE_SCOPE,
    audit_names,
    count,
    header,
    refresh,
    sign_in_and_redeem,
    unique_username,
    verified_claims,
)


@pytest.fixture
def username(make_account) -> str:
    name = unique_username()
    make_account(username=name)
    return name


@pytest.fixture
def portal(make_client):
    """A first-party portal registered for offline access."""
    return make_client(scope=OFFLINE_SCOPE)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- issuing ----------------------------------------------------------------------------------
def test_offline_access_yields_a_prefixed_refresh_token_stored_only_as_sha256(client, portal, username):
    tokens = sign_in_and_redeem(client, portal, username)
    value = tokens["refresh_token"]
    assert value.startswith("rt_") and len(value) >= 40
    assert "offline_access" in tokens["scope"].split()
    row = db.session.execute(select(RefreshToken)).scalar_one()
    assert row.token_hash == secret_hash(value)
    assert value not in {row.token_hash, row.id, row.family_id}


def test_client_not_registered_for_offline_access_gets_no_refresh_token_and_no_error(
    client, make_client, username
):
    portal = make_client()  # openid profile email students
    tokens = sign_in_and_redeem(client, portal, username, scope=OFFLINE_SCOPE)
    assert "refresh_token" not in tokens
    assert "offline_access" not in tokens["scope"].split()
    assert count(RefreshToken) == 0


def test_refresh_grant_is_unauthorized_for_a_client_without_offline_access(client, make_client, username):
    portal = make_client()
    sign_in_and_redeem(client, portal, username)
    response = refresh(client, portal.client_id, portal.client_secret, "rt_" + "x" * 43)
    assert response.status_code == 400
    assert response.get_json()["error"] == "unauthorized_client"


def test_offline_access_not_asked_for_gives_no_refresh_token(client, portal, username):
    tokens = sign_in_and_redeem(client, portal, username, scope="openid profile")
    assert "refresh_token" not in tokens


def test_third_party_gets_refresh_token_only_after_consent_listing_offline_access(
    client, make_client, username
):
    app_client = make_client(name="Homework Helper", first_party=False, scope=OFFLINE_SCOPE)
    auth = AuthRequest(app_client.client_id, scope=OFFLINE_SCOPE)
    page = through_signin(client, auth, username)
    assert is_consent_page(page)
    assert "Access while you are away" in page.get_data(as_text=True)
    allowed = answer_consent(client, page, "allow")
    code = allowed.headers["Location"].split("code=")[1].split("&")[0]
    tokens = redeem(client, auth, code, app_client.client_secret).get_json()
    assert tokens["refresh_token"].startswith("rt_")


def test_prompt_none_drops_unconsented_offline_access_silently(client, make_client, username):
    app_client = make_client(name="Homework Helper", first_party=False, scope=OFFLINE_SCOPE)
    first = AuthRequest(app_client.client_id, scope="openid profile")
    authorize_as(client, first, username)  # consents to openid profile only
    silent = AuthRequest(
        app_client.client_id, scope="openid profile offline_access", extra={"prompt": "none"}
    )
    query = authorize_as(client, silent, username)
    assert "error" not in query, query
    tokens = redeem(client, silent, query["code"], app_client.client_secret).get_json()
    assert "refresh_token" not in tokens
    assert tokens["scope"].split() == ["openid", "profile"]


def test_without_prompt_none_unconsented_offline_access_asks_again(client, make_client, username):
    app_client = make_client(name="Homework Helper", first_party=False, scope=OFFLINE_SCOPE)
    authorize_as(client, AuthRequest(app_client.client_id, scope="openid profile"), username)
    again = AuthRequest(app_client.client_id, scope="openid profile offline_access")
    assert is_consent_page(client.get(again.url()))


# --- rotation ---------------------------------------------------------------------------------
def test_each_refresh_rotates_the_token_and_returns_fresh_access_and_id_tokens(
    client, portal, username, clock
):
    tokens = sign_in_and_redeem(client, portal, username)
    first_claims = verified_claims(client, tokens["id_token"])
    clock.advance(timedelta(minutes=20))
    response = refresh(client, portal.client_id, portal.client_secret, tokens["refresh_token"])
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    refreshed = response.get_json()
    assert refreshed["refresh_token"].startswith("rt_")
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    assert refreshed["access_token"] != tokens["access_token"]
    assert header(client, refreshed["access_token"])["typ"] == "at+jwt"
    assert client.get("/userinfo", headers=bearer(refreshed["access_token"])).status_code == 200
    # OIDC Core 12.2: same iss, sub, aud and auth_time; a new iat; no nonce.
    claims = verified_claims(client, refreshed["id_token"])
    for name in ("iss", "sub", "aud", "auth_time", "sid"):
        assert claims[name] == first_claims[name], name
    assert claims["iat"] == first_claims["iat"] + 20 * 60
    assert "nonce" not in claims and "nonce" in first_claims
    # The new token works in turn.
    again = refresh(client, portal.client_id, portal.client_secret, refreshed["refresh_token"])
    assert again.status_code == 200, again.get_json()
    assert count(RefreshTokenFamily) == 1
    assert count(RefreshToken) == 3


def test_reusing_a_rotated_token_revokes_the_whole_family_and_is_audited(client, portal, username):
    tokens = sign_in_and_redeem(client, portal, username)
    rotated = refresh(client, portal.client_id, portal.client_secret, tokens["refresh_token"]).get_json()
    reused = refresh(client, portal.client_id, portal.client_secret, tokens["refresh_token"])
    assert reused.status_code == 400
    assert reused.get_json()["error"] == "invalid_grant"
    names = audit_names()
    assert "refresh_token.reused" in names
    assert "refresh_token_family.revoked" in names
    # The thief's copy and the legitimate client's current token are both dead now...
    current = refresh(client, portal.client_id, portal.client_secret, rotated["refresh_token"])
    assert current.status_code == 400
    assert current.get_json()["error"] == "invalid_grant"
    # ...and so are the access tokens of the family.
    assert client.get("/userinfo", headers=bearer(rotated["access_token"])).status_code == 401
    family = db.session.execute(select(RefreshTokenFamily)).scalar_one()
    assert family.revoked_reason == "refresh_token_reused"


def test_narrower_scope_on_refresh_narrows_the_access_token_only(client, portal, username):
    tokens = sign_in_and_redeem(client, portal, username)
    narrow = refresh(
        client, portal.client_id, portal.client_secret, tokens["refresh_token"], scope="openid email"
    )
    assert narrow.status_code == 200, narrow.get_json()
    body = narrow.get_json()
    assert body["scope"] == "openid email"
    assert verified_claims(client, body["access_token"])["scope"] == "openid email"
    # The family keeps its scope: the next refresh may ask for all of it again.
    full = refresh(client, portal.client_id, portal.client_secret, body["refresh_token"])
    assert set(full.get_json()["scope"].split()) == set(OFFLINE_SCOPE.split())


def test_wider_scope_on_refresh_is_invalid_scope_and_keeps_the_token(client, make_client, username):
    portal = make_client(scope=OFFLINE_SCOPE)
    tokens = sign_in_and_redeem(client, portal, username, scope="openid offline_access")
    wider = refresh(
        client, portal.client_id, portal.client_secret, tokens["refresh_token"], scope="openid email"
    )
    assert wider.status_code == 400
    assert wider.get_json()["error"] == "invalid_scope"
    # Refused before anything changed: the token was not rotated.
    assert refresh(client, portal.client_id, portal.client_secret, tokens["refresh_token"]).status_code == 200


def test_public_client_refreshes_with_its_client_id(client, make_client, username):
    app = make_client(public=True, scope=OFFLINE_SCOPE)
    tokens = sign_in_and_redeem(client, app, username)
    response = refresh(client, app.client_id, None, tokens["refresh_token"])
    assert response.status_code == 200, response.get_json()


# --- lives ------------------------------------------------------------------------------------
def test_token_unused_for_longer_than_the_idle_life_is_expired(client, portal, username, clock):
    tokens = sign_in_and_redeem(client, portal, username)
    clock.advance(timedelta(days=14, seconds=1))
    response = refresh(client, portal.client_id, portal.client_secret, tokens["refresh_token"])
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "invalid_grant",
        "error_description": "The refresh token has expired.",
    }


def test_a_family_ends_at_its_absolute_life_however_often_it_is_used(client, portal, username, clock):
    current = sign_in_and_redeem(client, portal, username)["refresh_token"]
    for _ in range(2):
        clock.advance(timedelta(days=13))
        response = refresh(client, portal.client_id, portal.client_secret, current)
        assert response.status_code == 200, response.get_json()
        current = response.get_json()["refresh_token"]
    clock.advance(timedelta(days=4, seconds=1))  # 30 days and a second since the sign-in
    response = refresh(client, portal.client_id, portal.client_secret, current)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


def test_lives_come_from_the_settings(settings, clock):
    from dataclasses import replace

    from idp import create_app

    app = create_app(replace(settings, refresh_token_seconds=3600, refresh_idle_seconds=600), clock=clock)
    with app.app_context():
        policy = app.extensions["idp.services"].token_policy
        assert policy.refresh_token_life == timedelta(hours=1)
        assert policy.refresh_idle == timedelta(minutes=10)


# --- bad refreshes ----------------------------------------------------------------------------
def test_another_clients_refresh_token_is_invalid_grant_and_not_revoked(
    client, portal, make_client, username
):
    tokens = sign_in_and_redeem(client, portal, username)
    other = make_client(name="Other Portal", scope=OFFLINE_SCOPE)
    response = refresh(client, other.client_id, other.client_secret, tokens["refresh_token"])
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"
    # Only the owner's use counts: the family lives on.
    assert refresh(client, portal.client_id, portal.client_secret, tokens["refresh_token"]).status_code == 200
    assert "refresh_token.reused" not in audit_names()


@pytest.mark.parametrize(
    "value",
    ["rt_" + "A" * 43, "not-a-token", "rt_" + "x" * 5000, "rt_\u00e9\u00e9", "ac_" + "B" * 43],
    ids=["unknown", "garbage", "huge", "non-ascii", "a-code"],
)
def test_foreign_or_malformed_refresh_token_is_invalid_grant(client, portal, username, value):
    sign_in_and_redeem(client, portal, username)
    response = refresh(client, portal.client_id, portal.client_secret, value)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


def test_missing_refresh_token_is_invalid_request(client, portal):
    from tests.functional.tokens import token_call

    response = token_call(
        client, "/token", portal.client_id, portal.client_secret, grant_type="refresh_token"
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_refresh_with_a_wrong_secret_is_invalid_client_and_rotates_nothing(client, portal, username):
    tokens = sign_in_and_redeem(client, portal, username)
    response = refresh(client, portal.client_id, "cs_wrong", tokens["refresh_token"])
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    assert refresh(client, portal.client_id, portal.client_secret, tokens["refresh_token"]).status_code == 200


def test_refresh_for_a_disabled_account_is_invalid_grant(client, portal, username):
    tokens = sign_in_and_redeem(client, portal, username)
    account = db.session.execute(select(Account)).scalar_one()
    account.status = AccountStatus.DISABLED
    db.session.commit()
    response = refresh(client, portal.client_id, portal.client_secret, tokens["refresh_token"])
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


# --- code replay ------------------------------------------------------------------------------
def test_replayed_code_is_refused_and_revokes_the_tokens_issued_from_it(client, portal, username):
    auth = AuthRequest(portal.client_id, scope=OFFLINE_SCOPE)
    code = authorize_as(client, auth, username)["code"]
    first = redeem(client, auth, code, portal.client_secret)
    assert first.status_code == 200
    tokens = first.get_json()
    assert client.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 200
    replay = redeem(client, auth, code, portal.client_secret)
    assert replay.status_code == 400
    assert replay.get_json()["error"] == "invalid_grant"
    assert client.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 401
    again = refresh(client, portal.client_id, portal.client_secret, tokens["refresh_token"])
    assert again.get_json()["error"] == "invalid_grant"
    names = audit_names()
    assert "authorization_code.replayed" in names
    assert "refresh_token_family.revoked" in names


def test_code_replay_with_a_wrong_verifier_revokes_nothing(client, portal, username):
    auth = AuthRequest(portal.client_id, scope=OFFLINE_SCOPE)
    code = authorize_as(client, auth, username)["code"]
    tokens = redeem(client, auth, code, portal.client_secret).get_json()
    wrong = redeem(client, auth, code, portal.client_secret, code_verifier="w" * 50)
    assert wrong.status_code == 400
    assert client.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 200
    assert refresh(client, portal.client_id, portal.client_secret, tokens["refresh_token"]).status_code == 200
