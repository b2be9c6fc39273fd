"""Consent for third-party clients, remembered per scope set, and the prompt / max_age parameters."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from idp.extensions import db
from idp.oauth.models import AuthorizationCode, AuthorizationRequest, Consent
from tests.conftest import AuthRequest, csrf_token, hidden_field, redirect_params
from tests.functional.oidc import authorize_as, redeem, sign_in

ALLOW_BUTTON = '<button type="submit" name="allow" value="Allow">Allow</button>'


def unique_username() -> str:
    return f"user-{secrets.token_hex(4)}"


def count(model: Any) -> int:
    db.session.rollback()
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def is_consent_page(response: TestResponse) -> bool:
    return response.status_code == 200 and ALLOW_BUTTON in response.get_data(as_text=True)


def signin_request_id(response: TestResponse) -> str:
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    location = response.headers["Location"]
    assert urlsplit(location).path == "/signin", location
    return redirect_params(location)["request"]


def through_signin(client: FlaskClient, auth: AuthRequest, username: str) -> TestResponse:
    """GET /authorize, sign in when sent to /signin, and return what the resumed request answers."""
    response = client.get(auth.url())
    if response.status_code == 303 and urlsplit(response.headers["Location"]).path == "/signin":
        signed_in = sign_in(client, username, request_id=signin_request_id(response))
        assert signed_in.status_code == 303, signed_in.get_data(as_text=True)[:500]
        response = client.get(signed_in.headers["Location"])
    return response


def answer_consent(client: FlaskClient, page: TestResponse, button: str) -> TestResponse:
    html = page.get_data(as_text=True)
    return client.post(
        "/authorize/consent",
        data={
            "csrf_token": csrf_token(html),
            "request_id": hidden_field(html, "request_id"),
            button: button.capitalize(),
        },
    )


def code_from(response: TestResponse, auth: AuthRequest) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    location = response.headers["Location"]
    assert location.startswith(auth.redirect_uri + "?"), location
    query = redirect_params(location)
    assert query["state"] == auth.state
    assert "error" not in query, query
    return query["code"]


def error_from(response: TestResponse, auth: AuthRequest) -> dict[str, str]:
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    location = response.headers["Location"]
    assert location.startswith(auth.redirect_uri + "?"), location
    query = redirect_params(location)
    assert query["state"] == auth.state
    assert "code" not in query
    return query


def id_token_claims(client: FlaskClient, tokens: dict[str, Any], client_id: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    token = jwt.decode(tokens["id_token"], keys, algorithms=["RS256"])
    assert token.claims["aud"] == client_id
    return dict(token.claims)


@pytest.fixture
def third_party(make_client):
    return make_client(name="Homework Helper", first_party=False)


@pytest.fixture
def username(make_account):
    name = unique_username()
    make_account(username=name)
    return name


# --- consent ----------------------------------------------------------------------------------
def test_first_authorization_for_third_party_shows_consent_page(client, third_party, username):
    auth = AuthRequest(third_party.client_id)
    page = through_signin(client, auth, username)
    assert is_consent_page(page), page.get_data(as_text=True)[:500]
    html = page.get_data(as_text=True)
    assert "Allow Homework Helper to sign you in?" in html
    assert "The students linked to your account" in html
    assert "Location" not in page.headers
    assert count(AuthorizationCode) == 0
    assert count(Consent) == 0


def test_allow_on_consent_page_issues_a_code(client, third_party, username):
    auth = AuthRequest(third_party.client_id)
    page = through_signin(client, auth, username)
    code = code_from(answer_consent(client, page, "allow"), auth)
    assert count(Consent) == 1
    assert count(AuthorizationRequest) == 0
    response = redeem(client, auth, code, third_party.client_secret)
    assert response.status_code == 200, response.get_json()
    assert id_token_claims(client, response.get_json(), third_party.client_id)["nonce"] == auth.nonce


def test_second_authorization_for_same_scopes_skips_consent(client, third_party, username):
    first = AuthRequest(third_party.client_id)
    code_from(answer_consent(client, through_signin(client, first, username), "allow"), first)
    second = AuthRequest(third_party.client_id)
    response = client.get(second.url())
    code = code_from(response, second)
    assert redeem(client, second, code, third_party.client_secret).status_code == 200


def test_narrower_scope_after_consent_skips_consent(client, third_party, username):
    first = AuthRequest(third_party.client_id)
    code_from(answer_consent(client, through_signin(client, first, username), "allow"), first)
    narrower = AuthRequest(third_party.client_id, scope="openid email")
    code_from(client.get(narrower.url()), narrower)


def test_wider_scope_asks_for_consent_again(client, third_party, username):
    first = AuthRequest(third_party.client_id, scope="openid profile")
    code_from(answer_consent(client, through_signin(client, first, username), "allow"), first)
    wider = AuthRequest(third_party.client_id, scope="openid profile students")
    page = client.get(wider.url())
    assert is_consent_page(page)
    html = page.get_data(as_text=True)
    assert "The students linked to your account" in html
    code_from(answer_consent(client, page, "allow"), wider)
    consent = db.session.execute(select(Consent)).scalar_one()
    assert set(consent.scope.split()) == {"openid", "profile", "students"}
    again = AuthRequest(third_party.client_id, scope="openid students")
    code_from(client.get(again.url()), again)


def test_deny_redirects_access_denied_with_state(client, third_party, username):
    auth = AuthRequest(third_party.client_id)
    page = through_signin(client, auth, username)
    query = error_from(answer_consent(client, page, "deny"), auth)
    assert query["error"] == "access_denied"
    assert count(AuthorizationCode) == 0
    assert count(Consent) == 0
    assert count(AuthorizationRequest) == 0
    # Nothing was remembered: the next request asks again.
    assert is_consent_page(client.get(AuthRequest(third_party.client_id).url()))


def test_consent_post_without_csrf_token_is_refused(client, third_party, username):
    auth = AuthRequest(third_party.client_id)
    page = through_signin(client, auth, username)
    request_id = hidden_field(page.get_data(as_text=True), "request_id")
    response = client.post("/authorize/consent", data={"request_id": request_id, "allow": "Allow"})
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "This form has expired or did not come from this site." in response.get_data(as_text=True)
    assert count(Consent) == 0
    assert count(AuthorizationCode) == 0
    # The genuine form still works afterwards.
    code_from(answer_consent(client, page, "allow"), auth)


def test_consent_post_for_unknown_request_is_refused(client, third_party, username):
    auth = AuthRequest(third_party.client_id)
    page = through_signin(client, auth, username)
    html = page.get_data(as_text=True)
    response = client.post(
        "/authorize/consent",
        data={"csrf_token": csrf_token(html), "request_id": "0" * 32, "allow": "Allow"},
    )
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "This sign-in request has expired." in response.get_data(as_text=True)
    assert count(Consent) == 0


def test_first_party_client_never_shows_consent_page(client, make_client, username):
    portal = make_client(first_party=True)
    auth = AuthRequest(portal.client_id)
    response = through_signin(client, auth, username)
    code_from(response, auth)
    assert count(Consent) == 0
    wider = AuthRequest(portal.client_id, scope="openid profile email students", extra={"prompt": "consent"})
    code_from(client.get(wider.url()), wider)


def test_prompt_consent_asks_again_even_when_remembered(client, third_party, username):
    first = AuthRequest(third_party.client_id)
    code_from(answer_consent(client, through_signin(client, first, username), "allow"), first)
    again = AuthRequest(third_party.client_id, extra={"prompt": "consent"})
    page = client.get(again.url())
    assert is_consent_page(page)
    code_from(answer_consent(client, page, "allow"), again)


# --- prompt=none ------------------------------------------------------------------------------
def test_prompt_none_without_session_redirects_login_required(client, make_client):
    portal = make_client()
    auth = AuthRequest(portal.client_id, extra={"prompt": "none"})
    query = error_from(client.get(auth.url()), auth)
    assert query["error"] == "login_required"
    assert count(AuthorizationRequest) == 0


def test_prompt_none_with_session_and_no_consent_redirects_consent_required(client, third_party, username):
    assert sign_in(client, username).status_code == 303
    auth = AuthRequest(third_party.client_id, extra={"prompt": "none"})
    query = error_from(client.get(auth.url()), auth)
    assert query["error"] == "consent_required"
    assert count(AuthorizationRequest) == 0
    assert count(AuthorizationCode) == 0


def test_prompt_none_with_session_and_consent_issues_code(client, third_party, username):
    first = AuthRequest(third_party.client_id)
    code_from(answer_consent(client, through_signin(client, first, username), "allow"), first)
    silent = AuthRequest(third_party.client_id, extra={"prompt": "none"})
    code_from(client.get(silent.url()), silent)


def test_prompt_none_with_max_age_exceeded_redirects_login_required(client, make_client, username, clock):
    portal = make_client()
    assert sign_in(client, username).status_code == 303
    clock.advance(timedelta(seconds=120))
    auth = AuthRequest(portal.client_id, extra={"prompt": "none", "max_age": "60"})
    assert error_from(client.get(auth.url()), auth)["error"] == "login_required"


# --- prompt=login and max_age: a fresh sign-in, and auth_time says when -------------------------
def reauthenticate(
    client: FlaskClient, auth: AuthRequest, username: str, clock: Any, *, wait: int = 1
) -> TestResponse:
    """Follow /authorize to /signin, sign in again, and resume, with time passing at each step."""
    request_id = signin_request_id(client.get(auth.url()))
    page = client.get(f"/signin?request={request_id}")
    assert page.status_code == 200
    clock.advance(timedelta(seconds=30))  # typing the password
    signed_in = sign_in(client, username, request_id=request_id)
    assert signed_in.status_code == 303, signed_in.get_data(as_text=True)[:500]
    assert signed_in.headers["Location"] == f"/authorize/continue/{request_id}"
    clock.advance(timedelta(seconds=wait))  # the browser following the redirect
    return client.get(signed_in.headers["Location"])


@pytest.mark.parametrize(
    "extra",
    [{"prompt": "login"}, {"max_age": "0"}, {"max_age": "60"}, {"prompt": "login", "max_age": "0"}],
    ids=["prompt-login", "max-age-0", "max-age-60", "both"],
)
def test_fresh_login_request_signs_in_again_and_auth_time_is_the_new_sign_in(
    client, make_client, username, clock, extra
):
    portal = make_client()
    first = AuthRequest(portal.client_id)
    first_code = authorize_as(client, first, username)["code"]
    first_tokens = redeem(client, first, first_code, portal.client_secret).get_json()
    first_auth_time = id_token_claims(client, first_tokens, portal.client_id)["auth_time"]
    assert first_auth_time == int(clock.now().timestamp())

    clock.advance(timedelta(minutes=5))
    auth = AuthRequest(portal.client_id, extra=extra)
    response = reauthenticate(client, auth, username, clock)
    code = code_from(response, auth)
    tokens = redeem(client, auth, code, portal.client_secret).get_json()
    claims = id_token_claims(client, tokens, portal.client_id)
    second_sign_in = first_auth_time + 5 * 60 + 30
    assert claims["auth_time"] == second_sign_in
    assert claims["auth_time"] > first_auth_time
    assert count(AuthorizationRequest) == 0


def test_max_age_within_session_age_does_not_ask_again(client, make_client, username, clock):
    portal = make_client()
    authorize_as(client, AuthRequest(portal.client_id), username)
    signed_in_at = int(clock.now().timestamp())
    clock.advance(timedelta(seconds=30))
    auth = AuthRequest(portal.client_id, extra={"max_age": "300"})
    code = code_from(client.get(auth.url()), auth)
    tokens = redeem(client, auth, code, portal.client_secret).get_json()
    assert id_token_claims(client, tokens, portal.client_id)["auth_time"] == signed_in_at


def test_prompt_login_resume_with_old_session_still_asks_for_sign_in(client, make_client, username, clock):
    portal = make_client()
    authorize_as(client, AuthRequest(portal.client_id), username)
    codes_before = count(AuthorizationCode)
    clock.advance(timedelta(minutes=5))
    auth = AuthRequest(portal.client_id, extra={"prompt": "login"})
    request_id = signin_request_id(client.get(auth.url()))
    clock.advance(timedelta(seconds=5))
    # Skipping the sign-in page and resuming directly does not satisfy prompt=login.
    resumed = client.get(f"/authorize/continue/{request_id}")
    assert signin_request_id(resumed) == request_id
    assert count(AuthorizationCode) == codes_before


def test_consent_covers_only_the_scopes_shown_on_the_page(client, make_client, username):
    narrow = make_client(name="Narrow App", first_party=False, scope="openid profile")
    auth = AuthRequest(narrow.client_id, scope="openid profile students email")
    page = through_signin(client, auth, username)
    assert is_consent_page(page)
    html = page.get_data(as_text=True)
    assert "Your name and username" in html
    assert "The students linked to your account" not in html
    assert "Your email address" not in html
    code_from(answer_consent(client, page, "allow"), auth)
    consent = db.session.execute(select(Consent)).scalar_one()
    assert set(consent.scope.split()) == {"openid", "profile"}
