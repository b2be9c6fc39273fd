"""Bad input at /authorize, /token and /signin: exact 4xx answers, no redirect to unverified URIs, no rows."""

from __future__ import annotations

import re
import secrets
from dataclasses import replace
from datetime import timedelta
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from idp import create_app
from idp.accounts.models import OPSession
from idp.extensions import db
from idp.oauth.models import AuthorizationCode, AuthorizationRequest
from tests.conftest import PASSWORD, REDIRECT_URI, AuthRequest, csrf_token, redirect_params
from tests.functional.oidc import authorize_as, basic_auth, redeem, sign_in

WRITTEN_BY_AUTHORIZE = (AuthorizationRequest, AuthorizationCode, OPSession)
INVALID_CREDENTIALS = "Invalid username or password."
CSRF_MESSAGE = "This form has expired or did not come from this site. Go back, reload the page and try again."


def row_counts() -> dict[str, int]:
    db.session.rollback()  # read what is committed, not what this session may still hold
    return {
        model.__tablename__: db.session.execute(select(func.count()).select_from(model)).scalar_one()
        for model in WRITTEN_BY_AUTHORIZE
    }


def unique_username(prefix: str = "user") -> str:
    # Failed sign-ins count towards a lockout: never reuse a username across tests or runs.
    return f"{prefix}-{secrets.token_hex(4)}"


def get_authorize(client: FlaskClient, pairs: list[tuple[str, str]]) -> TestResponse:
    return client.get("/authorize?" + urlencode(pairs))


def pairs_of(auth: AuthRequest) -> list[tuple[str, str]]:
    return list(auth.params().items())


# The pages' sentences (idp.web.errors.AUTHORIZATION_ERRORS), not Authlib's English descriptions.
UNKNOWN_PORTAL = "This sign-in request does not name a portal known to the district."
WHERE_TO_RETURN = "This sign-in request does not say where to return"
UNSUPPORTED_ANSWER = "This sign-in request asks for an answer"


def assert_error_page(response: TestResponse, message: str, *, error: str = "invalid_request") -> None:
    """A 400 HTML page that says what went wrong and sends the browser nowhere."""
    assert response.status_code == 400, response.get_data(as_text=True)[:500]
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert message in html, html
    assert f"Error code: {error}" in html


def assert_error_redirect(response: TestResponse, auth: AuthRequest, error: str) -> dict[str, str]:
    """A 302 to the client's registered redirect URI with the error and the request's state."""
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    location = response.headers["Location"]
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == auth.redirect_uri
    query = redirect_params(location)
    assert query["error"] == error
    assert query["state"] == auth.state
    assert "code" not in query
    return query


@pytest.fixture
def portal(make_client):
    return make_client()


@pytest.fixture
def signed_in(client, make_account):
    """A browser with a live OP session."""
    username = unique_username("signed")
    make_account(username=username)
    response = sign_in(client, username)
    assert response.status_code == 303
    return username


# --- /authorize: refused with a page, never a redirect ---------------------------------------
def test_unknown_client_id_gets_error_page_without_redirect(client, portal):
    before = row_counts()
    auth = AuthRequest("no-such-client")
    response = get_authorize(client, pairs_of(auth))
    assert_error_page(response, UNKNOWN_PORTAL, error="invalid_client")
    assert auth.redirect_uri not in response.get_data(as_text=True)
    assert row_counts() == before


def test_missing_client_id_gets_error_page_without_redirect(client, portal):
    before = row_counts()
    auth = AuthRequest(portal.client_id, omit=("client_id",))
    response = get_authorize(client, pairs_of(auth))
    assert_error_page(response, UNKNOWN_PORTAL, error="invalid_client")
    assert row_counts() == before


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://attacker.example/callback",
        REDIRECT_URI + "/x",
        REDIRECT_URI + "?next=https://attacker.example/",
        REDIRECT_URI + "#fragment",
        REDIRECT_URI + "/",
        REDIRECT_URI[:-1],
        REDIRECT_URI.replace("https://", "http://"),
        REDIRECT_URI.replace("portal.example.test", "PORTAL.example.test"),
        REDIRECT_URI.replace("portal.example.test", "portal.example.test.attacker.example"),
    ],
    ids=[
        "foreign",
        "path-extension",
        "added-query",
        "fragment",
        "trailing-slash",
        "prefix",
        "http",
        "host-case",
        "host-suffix",
    ],
)
def test_unregistered_redirect_uri_gets_error_page_without_redirect(client, portal, redirect_uri):
    before = row_counts()
    auth = AuthRequest(portal.client_id, redirect_uri=redirect_uri)
    response = get_authorize(client, pairs_of(auth))
    assert_error_page(response, WHERE_TO_RETURN)
    assert row_counts() == before


def test_missing_redirect_uri_gets_error_page_without_redirect(client, portal):
    before = row_counts()
    auth = AuthRequest(portal.client_id, omit=("redirect_uri",))
    response = get_authorize(client, pairs_of(auth))
    assert_error_page(response, WHERE_TO_RETURN)
    assert row_counts() == before


def test_unsupported_response_type_with_unregistered_redirect_uri_gets_page(client, portal):
    before = row_counts()
    auth = AuthRequest(
        portal.client_id,
        redirect_uri="https://attacker.example/callback",
        extra={"response_type": "token"},
    )
    response = get_authorize(client, pairs_of(auth))
    assert_error_page(
        response,
        UNSUPPORTED_ANSWER,
        error="unsupported_response_type",
    )
    assert row_counts() == before


@pytest.mark.parametrize("name", ["client_id", "redirect_uri", "state", "response_type", "code_challenge"])
def test_parameter_sent_twice_gets_error_page(client, portal, name):
    before = row_counts()
    auth = AuthRequest(portal.client_id)
    pairs = pairs_of(auth)
    pairs.append((name, dict(pairs)[name]))
    response = get_authorize(client, pairs)
    assert_error_page(response, f"The parameter {name} was sent more than once.")
    assert row_counts() == before


def test_parameter_sent_twice_in_a_posted_request_gets_error_page(client, portal):
    before = row_counts()
    auth = AuthRequest(portal.client_id)
    body = urlencode([*pairs_of(auth), ("redirect_uri", "https://attacker.example/callback")])
    response = client.post("/authorize", data=body, content_type="application/x-www-form-urlencoded")
    assert_error_page(response, "The parameter redirect_uri was sent more than once.")
    assert row_counts() == before


@pytest.mark.parametrize("name", ["state", "nonce", "client_id", "scope", "login_hint", "unknown_extra"])
def test_absurdly_long_parameter_gets_error_page(client, portal, name):
    before = row_counts()
    auth = AuthRequest(portal.client_id, extra={name: "a" * 100_000})
    response = get_authorize(client, pairs_of(auth))
    assert_error_page(response, "The authorization request is too large.")
    assert row_counts() == before


def test_absurdly_long_parameter_name_gets_error_page(client, portal):
    before = row_counts()
    auth = AuthRequest(portal.client_id, extra={"x" * 5000: "1"})
    response = get_authorize(client, pairs_of(auth))
    assert_error_page(response, "The authorization request is too large.")
    assert row_counts() == before


@pytest.mark.parametrize("char", ["\x00", "\x01", "\n", "\x7f"], ids=["nul", "soh", "newline", "del"])
@pytest.mark.parametrize("name", ["client_id", "redirect_uri", "state", "nonce", "scope", "login_hint"])
def test_control_characters_in_a_parameter_get_error_page(client, portal, name, char):
    before = row_counts()
    auth = AuthRequest(portal.client_id)
    pairs = [(key, value + char if key == name else value) for key, value in pairs_of(auth)]
    if name not in dict(pairs):
        pairs.append((name, "x" + char))
    response = get_authorize(client, pairs)
    assert_error_page(response, "The authorization request contains characters that are not allowed.")
    assert row_counts() == before


@pytest.mark.parametrize(
    "suffix", ['"', "\\", "\u00e9", "\u2028"], ids=["quote", "backslash", "e-acute", "u2028"]
)
@pytest.mark.parametrize("name", ["redirect_uri", "response_type"])
def test_parameter_echoed_in_errors_with_odd_characters_gets_error_page(client, portal, name, suffix):
    # Authlib puts these into error_description, whose characters RFC 6749 restricts.
    before = row_counts()
    auth = AuthRequest(portal.client_id)
    pairs = [(key, value + suffix if key == name else value) for key, value in pairs_of(auth)]
    response = get_authorize(client, pairs)
    assert_error_page(response, f"The parameter {name} contains characters that are not allowed.")
    assert row_counts() == before


def test_redirect_uri_with_a_space_gets_error_page(client, portal):
    auth = AuthRequest(portal.client_id, redirect_uri=REDIRECT_URI + " ")
    assert_error_page(get_authorize(client, pairs_of(auth)), WHERE_TO_RETURN)


def test_nonce_longer_than_its_column_gets_error_page(client, portal, signed_in):
    before = row_counts()
    auth = AuthRequest(portal.client_id, nonce="n" * 501)
    assert_error_page(get_authorize(client, pairs_of(auth)), "The authorization request is too large.")
    assert row_counts() == before


def test_longest_accepted_nonce_and_state_go_through_the_whole_flow(client, make_account, portal):
    username = unique_username()
    make_account(username=username)
    auth = AuthRequest(portal.client_id, nonce="n" * 500, state="s" * 2000)
    result = authorize_as(client, auth, username)
    assert result["state"] == auth.state
    response = redeem(client, auth, result["code"], portal.client_secret)
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize(
    "max_age", ["\u00b2", "-1", "1.5", "abc"], ids=["superscript-two", "negative", "fraction", "word"]
)
def test_max_age_that_is_not_a_number_redirects_invalid_request(client, portal, signed_in, max_age):
    # Ignoring it would skip the re-authentication the portal asked for: refuse instead.
    auth = AuthRequest(portal.client_id, extra={"max_age": max_age})
    response = get_authorize(client, pairs_of(auth))
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    query = redirect_params(response.headers["Location"])
    assert query["state"] == auth.state
    assert query["error"] == "invalid_request"
    assert "code" not in query


# --- /authorize: errors returned to the verified redirect URI ---------------------------------
def test_missing_code_challenge_redirects_invalid_request_with_state(client, portal):
    before = row_counts()
    auth = AuthRequest(portal.client_id, omit=("code_challenge", "code_challenge_method"))
    query = assert_error_redirect(get_authorize(client, pairs_of(auth)), auth, "invalid_request")
    assert query["error_description"] == "PKCE is required: send code_challenge with S256."
    assert row_counts() == before


@pytest.mark.parametrize(
    ("extra", "omit"),
    [
        ({"code_challenge_method": "plain"}, ()),
        ({"code_challenge_method": "s256"}, ()),
        ({}, ("code_challenge_method",)),
    ],
    ids=["plain", "lowercase-s256", "missing-method"],
)
def test_code_challenge_method_other_than_s256_redirects_invalid_request(client, portal, extra, omit):
    before = row_counts()
    auth = AuthRequest(portal.client_id, extra=extra, omit=omit)
    query = assert_error_redirect(get_authorize(client, pairs_of(auth)), auth, "invalid_request")
    assert query["error_description"] == "code_challenge_method must be S256."
    assert row_counts() == before


@pytest.mark.parametrize("response_type", ["token", "id_token", "code id_token", "code token"])
def test_unsupported_response_type_redirects_with_error_and_state(client, portal, response_type):
    before = row_counts()
    auth = AuthRequest(portal.client_id, extra={"response_type": response_type})
    assert_error_redirect(get_authorize(client, pairs_of(auth)), auth, "unsupported_response_type")
    assert row_counts() == before


@pytest.mark.parametrize(
    ("extra", "omit", "error"),
    [
        ({}, ("code_challenge", "code_challenge_method"), "invalid_request"),
        ({"code_challenge_method": "plain"}, (), "invalid_request"),
        ({"response_type": "token"}, (), "unsupported_response_type"),
    ],
    ids=["no-pkce", "plain-pkce", "token-response"],
)
def test_bad_request_from_signed_in_browser_issues_no_code(client, portal, signed_in, extra, omit, error):
    before = row_counts()
    auth = AuthRequest(portal.client_id, extra=extra, omit=omit)
    assert_error_redirect(get_authorize(client, pairs_of(auth)), auth, error)
    assert row_counts() == before


def test_unregistered_redirect_uri_from_signed_in_browser_gets_page(client, portal, signed_in):
    before = row_counts()
    auth = AuthRequest(portal.client_id, redirect_uri=REDIRECT_URI + "/x")
    assert_error_page(get_authorize(client, pairs_of(auth)), WHERE_TO_RETURN)
    assert row_counts() == before


# --- /token -----------------------------------------------------------------------------------
@pytest.fixture
def issued(client, make_account, portal):
    """A fresh authorization code for ``portal`` and the request that produced it."""
    username = unique_username("token")
    make_account(username=username)
    auth = AuthRequest(portal.client_id)
    return auth, authorize_as(client, auth, username)["code"]


def assert_token_error(response: TestResponse, status: int, error: str) -> dict[str, str]:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == error, body
    assert "access_token" not in body
    return body


def test_token_with_wrong_client_secret_is_401_invalid_client(client, portal, issued):
    auth, code = issued
    response = redeem(client, auth, code, "cs_wrong")
    assert_token_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_token_with_wrong_client_secret_in_form_is_invalid_client(client, portal, issued):
    auth, code = issued
    response = client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": auth.redirect_uri,
            "code_verifier": auth.verifier,
            "client_id": portal.client_id,
            "client_secret": "cs_wrong",
        },
    )
    assert_token_error(response, 401, "invalid_client")


def test_token_for_unknown_client_is_invalid_client(client, portal, issued):
    auth, code = issued
    response = client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": auth.redirect_uri,
            "code_verifier": auth.verifier,
        },
        headers=basic_auth("no-such-client", "cs_whatever"),
    )
    assert_token_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert redeem(client, auth, code, portal.client_secret).status_code == 200


@pytest.mark.parametrize("grant_type", ["password", "implicit", ""])
def test_token_with_unsupported_grant_type_is_400(client, portal, grant_type):
    response = client.post(
        "/token",
        data={"grant_type": grant_type, "username": "x", "password": "y"},
        headers=basic_auth(portal.client_id, portal.client_secret),
    )
    assert_token_error(response, 400, "unsupported_grant_type")


def test_token_without_code_is_400_invalid_request(client, portal, issued):
    auth, code = issued
    response = client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "redirect_uri": auth.redirect_uri,
            "code_verifier": auth.verifier,
        },
        headers=basic_auth(portal.client_id, portal.client_secret),
    )
    body = assert_token_error(response, 400, "invalid_request")
    assert body["error_description"] == "Missing 'code' in request."
    assert redeem(client, auth, code, portal.client_secret).status_code == 200


def test_code_issued_to_another_client_is_invalid_grant(client, make_client, portal, issued):
    auth, code = issued
    other = make_client(name="Other Portal")
    response = redeem(client, AuthRequest(other.client_id, verifier=auth.verifier), code, other.client_secret)
    assert_token_error(response, 400, "invalid_grant")
    # The attempt consumed nothing: the rightful client still redeems it.
    assert redeem(client, auth, code, portal.client_secret).status_code == 200


def test_redirect_uri_other_than_the_requests_is_invalid_grant(client, make_account, make_client):
    second = "https://portal.example.test/other-callback"
    portal = make_client(redirect_uris=[REDIRECT_URI, second])
    username = unique_username()
    make_account(username=username)
    auth = AuthRequest(portal.client_id)
    code = authorize_as(client, auth, username)["code"]
    for redirect_uri in (second, REDIRECT_URI + "/x", "https://attacker.example/callback"):
        response = redeem(client, auth, code, portal.client_secret, redirect_uri=redirect_uri)
        assert_token_error(response, 400, "invalid_grant")
    missing = redeem(client, auth, code, portal.client_secret, redirect_uri=None)
    assert_token_error(missing, 400, "invalid_grant")
    assert redeem(client, auth, code, portal.client_secret).status_code == 200


def test_expired_code_is_invalid_grant(client, portal, issued, clock):
    auth, code = issued
    clock.advance(timedelta(seconds=61))
    response = redeem(client, auth, code, portal.client_secret)
    assert_token_error(response, 400, "invalid_grant")


def test_code_just_before_expiry_is_still_redeemed(client, portal, issued, clock):
    auth, code = issued
    clock.advance(timedelta(seconds=59))
    assert redeem(client, auth, code, portal.client_secret).status_code == 200


def test_json_body_at_token_is_a_json_error_not_500(client, portal, issued):
    auth, code = issued
    response = client.post(
        "/token",
        json={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": auth.redirect_uri,
            "code_verifier": auth.verifier,
        },
        headers=basic_auth(portal.client_id, portal.client_secret),
    )
    assert_token_error(response, 400, "unsupported_grant_type")
    assert redeem(client, auth, code, portal.client_secret).status_code == 200


def test_oversized_form_at_token_is_413_not_500(client, portal):
    body = urlencode({"grant_type": "authorization_code", "code": "a" * 200_000})
    response = client.post(
        "/token",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers=basic_auth(portal.client_id, portal.client_secret),
    )
    assert response.status_code == 413
    assert response.mimetype == "application/json"
    assert response.get_json() == {
        "error": "invalid_request",
        "error_description": "The request is too large.",
    }


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe\xfd\x00\x01garbage",
        b"grant_type=authorization_code&code=\xff\xfe&redirect_uri=%ZZ%",
        b"grant_type=%ff%fe&code=%c3%28",
        b"=&&==&grant_type",
    ],
    ids=["binary", "raw-invalid-utf8", "percent-invalid-utf8", "empty-pairs"],
)
def test_garbage_form_body_at_token_is_4xx_not_500(client, portal, body):
    response = client.post(
        "/token",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers=basic_auth(portal.client_id, portal.client_secret),
    )
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    assert response.get_json()["error"] in {"invalid_request", "unsupported_grant_type", "invalid_grant"}


def test_garbage_multipart_body_at_token_is_4xx_not_500(client, portal):
    response = client.post(
        "/token",
        data=b"--x\r\nnot really multipart",
        content_type="multipart/form-data; boundary=x",
        headers=basic_auth(portal.client_id, portal.client_secret),
    )
    assert 400 <= response.status_code < 500
    assert response.mimetype == "application/json"


def test_nul_in_client_id_at_token_is_invalid_client(client, portal, issued):
    auth, code = issued
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": auth.redirect_uri,
        "code_verifier": auth.verifier,
    }
    by_header = client.post("/token", data=form, headers=basic_auth(portal.client_id + "\x00", "s"))
    assert_token_error(by_header, 401, "invalid_client")
    by_form = client.post(
        "/token", data={**form, "client_id": portal.client_id + "\x00", "client_secret": "s"}
    )
    assert_token_error(by_form, 400, "invalid_client")
    assert redeem(client, auth, code, portal.client_secret).status_code == 200


@pytest.mark.parametrize(
    "value",
    ["//46/w==", "\u00e9\u00e9\u00e9\u00e9"],
    ids=["credentials-not-utf8", "base64-not-ascii"],
)
def test_unreadable_basic_credentials_at_token_are_401_invalid_client(client, portal, issued, value):
    auth, code = issued
    response = client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": auth.redirect_uri,
            "code_verifier": auth.verifier,
        },
        headers={"Authorization": f"Basic {value}"},
    )
    body = assert_token_error(response, 401, "invalid_client")
    assert body["error_description"] == "The client credentials are unreadable."
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert redeem(client, auth, code, portal.client_secret).status_code == 200


def test_public_client_redeems_with_verifier_and_no_secret(client, make_account, make_client):
    public = make_client(public=True)
    assert public.client_secret is None
    username = unique_username()
    make_account(username=username)
    auth = AuthRequest(public.client_id)
    code = authorize_as(client, auth, username)["code"]
    response = redeem(client, auth, code, None)
    assert response.status_code == 200, response.get_json()
    tokens = response.get_json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["id_token"] and tokens["access_token"]


def test_public_client_without_verifier_is_refused(client, make_account, make_client):
    public = make_client(public=True)
    username = unique_username()
    make_account(username=username)
    auth = AuthRequest(public.client_id)
    code = authorize_as(client, auth, username)["code"]
    response = redeem(client, auth, code, None, code_verifier=None)
    body = assert_token_error(response, 400, "invalid_request")
    assert body["error_description"] == "Missing 'code_verifier'"
    wrong = redeem(client, auth, code, None, code_verifier="w" * 43)
    assert_token_error(wrong, 400, "invalid_grant")
    assert redeem(client, auth, code, None).status_code == 200


def test_public_client_cannot_authorize_without_pkce(client, make_client):
    public = make_client(public=True)
    auth = AuthRequest(public.client_id, omit=("code_challenge", "code_challenge_method"))
    assert_error_redirect(get_authorize(client, pairs_of(auth)), auth, "invalid_request")


# --- /signin ----------------------------------------------------------------------------------
def session_cookie(response: TestResponse) -> SimpleCookie | None:
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith("idp_session="):
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(header)
            return cookie
    return None


def op_session_count() -> int:
    db.session.rollback()
    return db.session.execute(select(func.count()).select_from(OPSession)).scalar_one()


def post_signin(client: FlaskClient, username: str, password: str) -> TestResponse:
    page = client.get("/signin")
    return client.post(
        "/signin",
        data={
            "csrf_token": csrf_token(page.get_data(as_text=True)),
            "username": username,
            "password": password,
            "request_id": "",
        },
    )


def without_csrf_token(html: str) -> str:
    return re.sub(r'name="csrf_token" type="hidden" value="[^"]+"', 'name="csrf_token" value=""', html)


def assert_failed_signin(response: TestResponse) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/html"
    assert session_cookie(response) is None
    html = response.get_data(as_text=True)
    assert f'<p class="error" role="alert">{INVALID_CREDENTIALS}</p>' in html
    assert 'name="password"' in html
    return html


def test_signin_post_without_csrf_token_is_400_with_readable_message(client, make_account):
    username = unique_username()
    make_account(username=username)
    response = client.post("/signin", data={"username": username, "password": PASSWORD})
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert CSRF_MESSAGE in response.get_data(as_text=True)
    assert session_cookie(response) is None
    assert op_session_count() == 0


def test_signin_post_with_another_browsers_csrf_token_is_refused(app, client, make_account):
    username = unique_username()
    make_account(username=username)
    other_browser = app.test_client()
    token = csrf_token(other_browser.get("/signin").get_data(as_text=True))
    client.get("/signin")
    response = client.post("/signin", data={"csrf_token": token, "username": username, "password": PASSWORD})
    assert response.status_code == 400
    assert CSRF_MESSAGE in response.get_data(as_text=True)
    assert session_cookie(response) is None
    assert op_session_count() == 0


def test_signin_with_wrong_password_shows_the_page_again_without_session(client, make_account):
    username = unique_username()
    make_account(username=username)
    html = assert_failed_signin(post_signin(client, username, "not-the-password"))
    assert html.count(INVALID_CREDENTIALS) == 1
    assert "locked" not in html.lower()
    assert "not-the-password" not in html
    assert op_session_count() == 0


def test_unknown_username_gets_the_same_page_as_a_wrong_password(client, make_account):
    username = unique_username()
    unknown = post_signin(client, username, "not-the-password")
    make_account(username=username)
    wrong_password = post_signin(client, username, "not-the-password")
    assert unknown.status_code == wrong_password.status_code == 200
    unknown_html, wrong_html = assert_failed_signin(unknown), assert_failed_signin(wrong_password)
    assert without_csrf_token(unknown_html) == without_csrf_token(wrong_html)
    assert op_session_count() == 0


@pytest.mark.parametrize(
    ("username_length", "password_length"),
    [(10_000, 10), (10, 10_000), (10_000, 10_000)],
    ids=["long-username", "long-password", "both-long"],
)
def test_ten_thousand_character_credentials_get_the_failure_page(
    client, make_account, username_length, password_length
):
    username = unique_username()
    make_account(username=username)
    long_username = (username + "x" * username_length)[:username_length]
    long_password = (PASSWORD + "p" * password_length)[:password_length]
    assert_failed_signin(post_signin(client, long_username, long_password))
    assert op_session_count() == 0


@pytest.mark.parametrize("field", ["username", "password"])
def test_nul_in_credentials_gets_the_failure_page(client, make_account, field):
    username = unique_username()
    make_account(username=username)
    credentials = {"username": username, "password": PASSWORD}
    credentials[field] += "\x00"
    assert_failed_signin(post_signin(client, credentials["username"], credentials["password"]))
    assert op_session_count() == 0


def test_signin_with_the_right_password_behind_long_padding_fails(client, make_account):
    username = unique_username()
    make_account(username=username)
    assert_failed_signin(post_signin(client, username, PASSWORD + " " * 10_000))


def test_signin_page_renders_on_its_own(client):
    response = client.get("/signin")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'name="username"' in html and 'name="password"' in html
    assert csrf_token(html)
    assert session_cookie(response) is None


def test_successful_signin_without_pending_request_goes_to_account(client, make_account):
    username = unique_username()
    account = make_account(username=username, first_name="Robin")
    response = post_signin(client, username, PASSWORD)
    assert response.status_code == 303
    assert response.headers["Location"] == "/account"
    assert session_cookie(response) is not None
    page = client.get("/account")
    assert page.status_code == 200
    assert account.username in page.get_data(as_text=True)


def test_session_cookie_is_httponly_lax_and_host_wide(client, make_account):
    username = unique_username()
    make_account(username=username)
    response = post_signin(client, username, PASSWORD)
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("idp_session=")]
    assert len(headers) == 1
    attributes = {part.strip().split("=", 1)[0].lower(): part for part in headers[0].split(";")[1:]}
    assert "httponly" in attributes
    assert attributes["samesite"].strip() == "SameSite=Lax"
    assert attributes["path"].strip() == "Path=/"
    assert "domain" not in attributes
    assert "secure" not in attributes  # the test issuer is plain http://localhost


def test_signing_in_again_rotates_the_session_id(app, client, make_account):
    username = unique_username()
    make_account(username=username)
    first = session_cookie(post_signin(client, username, PASSWORD))
    assert first is not None
    old_value = first["idp_session"].value
    second = session_cookie(post_signin(client, username, PASSWORD))
    assert second is not None
    new_value = second["idp_session"].value
    assert new_value != old_value
    assert op_session_count() == 1

    stale_browser = app.test_client()
    stale_browser.set_cookie("idp_session", old_value)
    stale = stale_browser.get("/account")
    assert stale.status_code == 303
    assert stale.headers["Location"] == "/signin"

    fresh_browser = app.test_client()
    fresh_browser.set_cookie("idp_session", new_value)
    assert fresh_browser.get("/account").status_code == 200


def test_failed_signin_keeps_the_existing_session(client, make_account):
    username = unique_username()
    make_account(username=username)
    assert post_signin(client, username, PASSWORD).status_code == 303
    assert_failed_signin(post_signin(client, username, "not-the-password"))
    assert client.get("/account").status_code == 200


def test_over_https_the_session_cookie_is_host_prefixed_and_secure(settings, clock, make_account):
    username = unique_username()
    make_account(username=username)
    https_app = create_app(replace(settings, issuer="https://idp.example.test"), clock=clock)
    https_app.config["TESTING"] = True
    browser = https_app.test_client()
    base = "https://idp.example.test"
    try:
        page = browser.get("/signin", base_url=base)
        # No Referer: the page's Referrer-Policy (no-referrer) keeps browsers from sending one.
        assert page.headers["Referrer-Policy"] == "no-referrer"
        response = browser.post(
            "/signin",
            base_url=base,
            data={
                "csrf_token": csrf_token(page.get_data(as_text=True)),
                "username": username,
                "password": PASSWORD,
            },
        )
        assert response.status_code == 303, response.get_data(as_text=True)[:300]
        headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("__Host-idp_session=")]
        assert len(headers) == 1
        attributes = {part.strip().lower() for part in headers[0].split(";")[1:]}
        assert {"secure", "httponly", "path=/", "samesite=lax"} <= attributes
        assert not any(a.startswith("domain") for a in attributes)
        assert not any(h.startswith("idp_session=") for h in response.headers.getlist("Set-Cookie"))
    finally:
        with https_app.app_context():
            db.session.remove()
            db.engine.dispose()
