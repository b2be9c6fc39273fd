"""OIDC Core 3.1.2.1 request parameters at /authorize: prompt, max_age, id_token_hint, login_hint,
ui_locales; RFC 9207's iss in every authorization response; discovery saying exactly that."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from idp import create_app
from idp.extensions import db
from tests.conftest import AuthRequest, redirect_params
from tests.functional.oidc import authorize_as, redeem, sign_in
from tests.functional.test_consent_and_prompts import (
    answer_consent,
    code_from,
    error_from,
    is_consent_page,
    signin_request_id,
)
from tests.functional.tokens import unique_username, verified_claims

ISSUER = "http://localhost"


@pytest.fixture
def username(make_account) -> str:
    name = unique_username()
    make_account(username=name)
    return name


@pytest.fixture
def portal(make_client):
    return make_client()


def id_token_of(client: FlaskClient, portal: Any, username: str) -> str:
    auth = AuthRequest(portal.client_id)
    code = authorize_as(client, auth, username)["code"]
    return str(redeem(client, auth, code, portal.client_secret).get_json()["id_token"])


# --- iss (RFC 9207) ---------------------------------------------------------------------------
def test_success_response_carries_iss(client, portal, username):
    query = authorize_as(client, AuthRequest(portal.client_id), username)
    assert query["iss"] == ISSUER
    assert query["code"]


def test_error_responses_carry_iss_once(client, portal, make_client, username):
    none = AuthRequest(portal.client_id, extra={"prompt": "none"})
    response = client.get(none.url())
    location = response.headers["Location"]
    assert redirect_params(location)["iss"] == ISSUER
    assert location.count("iss=") == 1
    third = make_client(name="Homework Helper", first_party=False)
    auth = AuthRequest(third.client_id)
    page = client.get(auth.url())
    request_id = signin_request_id(page)
    signed = sign_in(client, username, request_id=request_id)
    denied = answer_consent(client, client.get(signed.headers["Location"]), "deny")
    query = error_from(denied, auth)
    assert query["error"] == "access_denied"
    assert query["iss"] == ISSUER
    assert denied.headers["Location"].count("iss=") == 1


def test_parameter_errors_redirected_to_the_client_carry_iss(client, portal):
    auth = AuthRequest(portal.client_id, omit=("code_challenge",))
    query = error_from(client.get(auth.url()), auth)
    assert query["error"] == "invalid_request"
    assert query["iss"] == ISSUER


# --- prompt -----------------------------------------------------------------------------------
def test_prompt_none_with_a_live_session_and_first_party_client_issues_a_code(client, portal, username):
    authorize_as(client, AuthRequest(portal.client_id), username)
    silent = AuthRequest(portal.client_id, extra={"prompt": "none"})
    code_from(client.get(silent.url()), silent)


def test_prompt_none_combined_with_another_value_is_invalid_request(client, portal, username):
    authorize_as(client, AuthRequest(portal.client_id), username)
    auth = AuthRequest(portal.client_id, extra={"prompt": "none login"})
    assert error_from(client.get(auth.url()), auth)["error"] == "invalid_request"


def test_max_age_zero_asks_for_a_sign_in_even_right_after_one(client, portal, username, clock):
    authorize_as(client, AuthRequest(portal.client_id), username)
    auth = AuthRequest(portal.client_id, extra={"max_age": "0"})
    signin_request_id(client.get(auth.url()))
    silent = AuthRequest(portal.client_id, extra={"max_age": "0", "prompt": "none"})
    assert error_from(client.get(silent.url()), silent)["error"] == "login_required"


def test_max_age_too_long_to_be_real_is_invalid_request(client, portal, username):
    authorize_as(client, AuthRequest(portal.client_id), username)
    auth = AuthRequest(portal.client_id, extra={"max_age": "9" * 40})
    assert error_from(client.get(auth.url()), auth)["error"] == "invalid_request"


def test_prompt_consent_for_a_third_party_shows_the_page_and_none_of_it_is_silent(
    client, make_client, username
):
    third = make_client(name="Homework Helper", first_party=False)
    first = AuthRequest(third.client_id)
    authorize_as(client, first, username)
    again = AuthRequest(third.client_id, extra={"prompt": "consent"})
    assert is_consent_page(client.get(again.url()))


# --- id_token_hint ----------------------------------------------------------------------------
def test_hint_naming_the_signed_in_user_is_honoured_silently(client, portal, username):
    hint = id_token_of(client, portal, username)
    auth = AuthRequest(portal.client_id, extra={"prompt": "none", "id_token_hint": hint})
    code_from(client.get(auth.url()), auth)


def test_hint_naming_another_user_with_prompt_none_is_login_required(client, portal, make_account, username):
    other = unique_username()
    make_account(username=other)
    hint = id_token_of(client, portal, other)
    assert sign_in(client, username).status_code == 303
    auth = AuthRequest(portal.client_id, extra={"prompt": "none", "id_token_hint": hint})
    assert error_from(client.get(auth.url()), auth)["error"] == "login_required"


def test_hint_naming_another_user_asks_for_a_sign_in_as_that_user(client, portal, make_account, username):
    other = unique_username()
    make_account(username=other)
    hint = id_token_of(client, portal, other)
    assert sign_in(client, username).status_code == 303
    auth = AuthRequest(portal.client_id, extra={"id_token_hint": hint})
    request_id = signin_request_id(client.get(auth.url()))
    signed = sign_in(client, other, request_id=request_id)
    code = code_from(client.get(signed.headers["Location"]), auth)
    tokens = redeem(client, auth, code, portal.client_secret).get_json()
    assert verified_claims(client, tokens["id_token"])["sub"] == verified_claims(client, hint)["sub"]


def test_signing_in_as_someone_else_than_the_hint_names_is_login_required(
    client, portal, make_account, username
):
    other = unique_username()
    make_account(username=other)
    hint = id_token_of(client, portal, other)
    client.delete_cookie("idp_session")
    auth = AuthRequest(portal.client_id, extra={"id_token_hint": hint})
    request_id = signin_request_id(client.get(auth.url()))
    signed = sign_in(client, username, request_id=request_id)
    assert error_from(client.get(signed.headers["Location"]), auth)["error"] == "login_required"


def test_expired_hint_still_identifies_the_user(client, portal, username, clock):
    hint = id_token_of(client, portal, username)
    clock.advance(timedelta(minutes=15))  # the ID token lives 10; the session 30 idle
    auth = AuthRequest(portal.client_id, extra={"prompt": "none", "id_token_hint": hint})
    code_from(client.get(auth.url()), auth)


@pytest.mark.parametrize("hint", ["garbage", "a.b.c", "x" * 20_000], ids=["garbage", "three-parts", "huge"])
def test_malformed_hint_is_invalid_request(client, portal, username, hint):
    authorize_as(client, AuthRequest(portal.client_id), username)
    auth = AuthRequest(portal.client_id, extra={"id_token_hint": hint})
    response = client.get(auth.url())
    if len(hint) > 16_384:
        assert response.status_code == 400  # refused as too large before any redirect
        return
    assert error_from(response, auth)["error"] == "invalid_request"


def test_access_token_as_hint_is_invalid_request(client, portal, username):
    auth0 = AuthRequest(portal.client_id)
    code = authorize_as(client, auth0, username)["code"]
    access_token = redeem(client, auth0, code, portal.client_secret).get_json()["access_token"]
    auth = AuthRequest(portal.client_id, extra={"id_token_hint": access_token})
    assert error_from(client.get(auth.url()), auth)["error"] == "invalid_request"


# --- login_hint and ui_locales ----------------------------------------------------------------
def test_login_hint_prefills_the_username(client, portal):
    auth = AuthRequest(portal.client_id, extra={"login_hint": "dana.rivera"})
    request_id = signin_request_id(client.get(auth.url()))
    page = client.get(f"/signin?request={request_id}").get_data(as_text=True)
    assert 'value="dana.rivera"' in page


def test_login_hint_is_escaped(client, portal):
    auth = AuthRequest(portal.client_id, extra={"login_hint": '"><script>x</script>'})
    request_id = signin_request_id(client.get(auth.url()))
    page = client.get(f"/signin?request={request_id}").get_data(as_text=True)
    assert "<script>x</script>" not in page


@pytest.fixture
def bilingual(settings, clock):
    app = create_app(replace(settings, languages=("en", "es")), clock=clock)
    app.config["TESTING"] = True
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def test_ui_locales_picks_the_first_offered_language_of_the_pages(bilingual, make_client):
    http = bilingual.test_client()
    portal = make_client()
    auth = AuthRequest(portal.client_id, extra={"ui_locales": "fr-CA es-MX en"})
    request_id = signin_request_id(http.get(auth.url()))
    page = http.get(f"/signin?request={request_id}").get_data(as_text=True)
    assert '<html lang="es">' in page
    # An explicit choice on the page still wins.
    chosen = http.get(f"/signin?request={request_id}&lang=en").get_data(as_text=True)
    assert '<html lang="en">' in chosen


def test_the_language_selector_keeps_the_request_and_remembers_the_choice(bilingual, make_client):
    http = bilingual.test_client()
    portal = make_client()
    request_id = signin_request_id(http.get(AuthRequest(portal.client_id).url()))

    page = http.get(f"/signin?request={request_id}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    chosen = http.get(f"/signin?request={request_id}&lang=es")
    later = http.get("/signin/trouble", headers={"Accept-Language": "en"}).get_data(as_text=True)

    # The selector's links carry the page's own query, and work without script.
    assert f'href="?request={request_id}&amp;lang=es">Español</a>' in page
    assert "idp_lang=es" in chosen.headers["Set-Cookie"]
    assert '<html lang="es">' in later  # the cookie outlasts the one page


def test_ui_locales_of_unoffered_languages_falls_back(bilingual, make_client):
    http = bilingual.test_client()
    portal = make_client()
    auth = AuthRequest(portal.client_id, extra={"ui_locales": "fr de"})
    request_id = signin_request_id(http.get(auth.url()))
    page = http.get(f"/signin?request={request_id}", headers={"Accept-Language": "es"}).get_data(as_text=True)
    assert '<html lang="es">' in page


# --- discovery --------------------------------------------------------------------------------
def test_discovery_lists_the_whole_surface(client):
    response = client.get("/.well-known/openid-configuration")
    assert response.mimetype == "application/json"
    doc = response.get_json()
    assert doc["grant_types_supported"] == ["authorization_code", "refresh_token", "client_credentials"]
    assert doc["revocation_endpoint"] == ISSUER + "/revoke"
    assert doc["introspection_endpoint"] == ISSUER + "/introspect"
    assert doc["end_session_endpoint"] == ISSUER + "/logout"
    assert doc["revocation_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "none",
    ]
    assert doc["introspection_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["backchannel_logout_supported"] is True
    assert doc["backchannel_logout_session_supported"] is True
    assert doc["frontchannel_logout_supported"] is False
    assert "sid" in doc["claims_supported"]
    assert "offline_access" in doc["scopes_supported"]


def test_discovery_is_the_same_bytes_every_time(client):
    first = client.get("/.well-known/openid-configuration").get_data()
    second = client.get("/.well-known/openid-configuration").get_data()
    assert first == second


def test_documents_answered_before_flask_match_the_flask_views(app, client):
    from idp.oauth.views import jwks, openid_configuration

    for path, view in (("/.well-known/openid-configuration", openid_configuration), ("/jwks.json", jwks)):
        fast = client.get(path)
        with app.test_request_context(path):
            slow = view()
        assert fast.status_code == 200
        assert fast.get_data() == slow.get_data(), path
        assert fast.mimetype == "application/json"
        for name in ("Cache-Control", "ETag"):
            assert fast.headers.get(name) == slow.headers.get(name), (path, name)
        assert fast.headers["X-Content-Type-Options"] == "nosniff"
        assert fast.headers["Referrer-Policy"] == "no-referrer"


def test_jwks_conditional_get_answers_304_and_head_has_no_body(client):
    first = client.get("/jwks.json")
    etag = first.headers["ETag"]
    again = client.get("/jwks.json", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.get_data() == b""
    assert client.get("/jwks.json", headers={"If-None-Match": '"other"'}).status_code == 200
    head = client.head("/.well-known/openid-configuration")
    assert head.status_code == 200 and head.get_data() == b""
    assert int(head.headers["Content-Length"]) == len(
        client.get("/.well-known/openid-configuration").get_data()
    )


def test_other_methods_on_the_documents_still_reach_flask(client):
    assert client.post("/.well-known/openid-configuration").status_code == 405
    assert client.post("/jwks.json").status_code == 405
