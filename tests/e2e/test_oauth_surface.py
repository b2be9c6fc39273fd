"""Refresh, revocation, introspection, prompts and logout, black-box over HTTP against gunicorn.

The portal side is Authlib's requests client (``OAuth2Session``) where it has the call, plain
``requests`` where it does not; the back-channel logout endpoint is a real HTTP server in this
process. Clients are registered through the real ``idp`` CLI.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.conftest import AuthRequest, csrf_token, hidden_field, redirect_params
from tests.e2e.conftest import HTTP_TIMEOUT, District, Provider, provider_env, run_idp
from tests.e2e.flows import describe, fetch_json, sign_in, start_authorization
from tests.receiver import Receiver, backchannel_receiver

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_backends("postgresql")]

OFFLINE_SCOPE = "openid profile email students offline_access"
POST_LOGOUT = "https://portal.example.test/"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


@dataclass(frozen=True)
class Portal:
    client_id: str
    client_secret: str
    redirect_uri: str


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with backchannel_receiver() as running:
        yield running


def register(district: District, *args: str) -> Portal:
    env = provider_env(district.database_url, district.keys_dir, issuer="http://127.0.0.1")
    name = f"Portal {secrets.token_hex(3)}"
    output = run_idp(
        env, "clients", "create", "--name", name, "--redirect-uri", district.redirect_uri, *args, "--json"
    )
    registered = json.loads(output)
    return Portal(registered["client_id"], registered["client_secret"], district.redirect_uri)


@pytest.fixture(scope="module")
def portal(district: District, receiver: Receiver) -> Portal:
    """A first-party portal with offline access, a post-logout URI and a back-channel URI."""
    return register(
        district,
        *("--first-party", "--scope", OFFLINE_SCOPE),
        *("--post-logout-redirect-uri", POST_LOGOUT, "--backchannel-logout-uri", receiver.url),
    )


@pytest.fixture(scope="module")
def third_party(district: District) -> Portal:
    return register(district, "--scope", "openid profile")


@pytest.fixture
def discovery(provider: Provider) -> dict[str, Any]:
    with requests.Session() as http:
        doc: dict[str, Any] = fetch_json(http, f"{provider.url}/.well-known/openid-configuration")
    return doc


def oauth_session(portal: Portal, scope: str = OFFLINE_SCOPE) -> OAuth2Session:
    return OAuth2Session(
        portal.client_id,
        portal.client_secret,
        scope=scope,
        redirect_uri=portal.redirect_uri,
        code_challenge_method="S256",
    )


def get(browser: requests.Session, url: str) -> requests.Response:
    return browser.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT)


def sign_in_through(browser: requests.Session, provider: Provider, district: District, url: str) -> str:
    """Start at ``url`` (an /authorize URL) with no session, sign in, return the final redirect."""
    request_id = start_authorization(browser, url)
    path = sign_in(
        browser,
        page_url=provider.url,
        post_url=provider.url,
        request_id=request_id,
        username=district.username,
        password=district.password,
    )
    response = get(browser, provider.url + urlsplit(path).path)
    with response:
        if response.status_code == 200 and "Allow" in response.text:
            html = response.text
            consent = browser.post(
                f"{provider.url}/authorize/consent",
                data={
                    "csrf_token": csrf_token(html),
                    "request_id": hidden_field(html, "request_id"),
                    "allow": "Allow",
                },
                allow_redirects=False,
                timeout=HTTP_TIMEOUT,
            )
            with consent:
                assert consent.status_code == 302, describe(consent)
                return consent.headers["Location"]
        assert response.status_code == 302, describe(response)
        return response.headers["Location"]


def code_flow(
    provider: Provider,
    district: District,
    discovery: dict[str, Any],
    portal: Portal,
    browser: requests.Session,
) -> dict[str, Any]:
    """A sign-in through Authlib's client; return its token response."""
    with oauth_session(portal) as client:
        state, nonce, verifier = (
            secrets.token_urlsafe(16),
            secrets.token_urlsafe(16),
            secrets.token_urlsafe(48),
        )
        url, _ = client.create_authorization_url(
            discovery["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
        )
        location = sign_in_through(browser, provider, district, url)
        assert redirect_params(location)["iss"] == provider.url  # RFC 9207
        token: dict[str, Any] = client.fetch_token(
            discovery["token_endpoint"], authorization_response=location, state=state, code_verifier=verifier
        )
    return token


def jwks_of(provider: Provider) -> KeySet:
    with requests.Session() as http:
        return KeySet.import_key_set(fetch_json(http, f"{provider.url}/jwks.json"))


def token_post(provider: Provider, portal: Portal, path: str, **form: str) -> requests.Response:
    return requests.post(
        f"{provider.url}{path}",
        data=form,
        auth=(portal.client_id, portal.client_secret),
        timeout=HTTP_TIMEOUT,
    )


def authorize_error(
    browser: requests.Session, provider: Provider, portal: Portal, **extra: str
) -> str | None:
    auth = AuthRequest(portal.client_id, redirect_uri=portal.redirect_uri, extra=extra)
    response = get(browser, auth.url(provider.url))
    with response:
        assert response.status_code == 302, describe(response)
        params = redirect_params(response.headers["Location"])
    assert params["state"] == auth.state
    assert params["iss"] == provider.url
    return params.get("error")


# --- refresh ----------------------------------------------------------------------------------
def test_refresh_rotates_and_reuse_revokes_the_family(
    provider: Provider, district: District, discovery: dict[str, Any], portal: Portal
) -> None:
    with requests.Session() as browser:
        token = code_flow(provider, district, discovery, portal, browser)
    first_refresh = token["refresh_token"]
    assert first_refresh.startswith("rt_")
    with oauth_session(portal) as client:
        refreshed = client.refresh_token(discovery["token_endpoint"], refresh_token=first_refresh)
    assert refreshed["refresh_token"] != first_refresh
    claims = jwt.decode(refreshed["id_token"], jwks_of(provider), algorithms=["RS256"]).claims
    assert claims["iss"] == provider.url and claims["aud"] == portal.client_id and "nonce" not in claims

    reuse = token_post(provider, portal, "/token", grant_type="refresh_token", refresh_token=first_refresh)
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant", describe(reuse)
    # The family is gone: the newest token too.
    newest = token_post(
        provider, portal, "/token", grant_type="refresh_token", refresh_token=refreshed["refresh_token"]
    )
    assert newest.status_code == 400 and newest.json()["error"] == "invalid_grant", describe(newest)


def test_concurrent_refreshes_with_one_token_rotate_it_once(
    provider: Provider, district: District, discovery: dict[str, Any], portal: Portal
) -> None:
    with requests.Session() as browser:
        token = code_flow(provider, district, discovery, portal, browser)
    attempts = 6
    barrier = threading.Barrier(attempts)

    def refresh_once(_: int) -> tuple[int, dict[str, Any]]:
        with requests.Session() as http:
            fetch_json(http, f"{provider.url}/healthz")  # connected before the barrier
            barrier.wait(timeout=HTTP_TIMEOUT)
            response = http.post(
                discovery["token_endpoint"],
                data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
                auth=(portal.client_id, portal.client_secret),
                timeout=HTTP_TIMEOUT,
            )
            with response:
                return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        results = list(pool.map(refresh_once, range(attempts)))
    winners = [body for status, body in results if status == 200]
    assert len(winners) == 1, [status for status, _ in results]
    assert all(body.get("error") == "invalid_grant" for status, body in results if status != 200)
    # Racing with one token is reuse: whatever the winner got is revoked with its family.
    for body in winners:
        answer = token_post(provider, portal, "/introspect", token=body["refresh_token"])
        assert answer.json() == {"active": False}


def test_revocation_then_introspection_is_inactive(
    provider: Provider, district: District, discovery: dict[str, Any], portal: Portal
) -> None:
    with requests.Session() as browser:
        token = code_flow(provider, district, discovery, portal, browser)
    with oauth_session(portal) as client:
        active = client.introspect_token(discovery["introspection_endpoint"], token=token["access_token"])
        assert active.status_code == 200 and active.json()["active"] is True, describe(active)
        assert active.json()["client_id"] == portal.client_id
        revoked = client.revoke_token(
            discovery["revocation_endpoint"], token=token["refresh_token"], token_type_hint="refresh_token"
        )
        assert revoked.status_code == 200, describe(revoked)
        for value in (token["refresh_token"], token["access_token"]):
            answer = client.introspect_token(discovery["introspection_endpoint"], token=value)
            assert answer.json() == {"active": False}
    userinfo = requests.get(
        discovery["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=HTTP_TIMEOUT,
    )
    assert userinfo.status_code == 401


def test_replayed_code_revokes_the_tokens_issued_from_it(
    provider: Provider, district: District, portal: Portal
) -> None:
    auth = AuthRequest(portal.client_id, redirect_uri=portal.redirect_uri, scope=OFFLINE_SCOPE)
    with requests.Session() as browser:
        code = redirect_params(sign_in_through(browser, provider, district, auth.url(provider.url)))["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": auth.redirect_uri,
        "code_verifier": auth.verifier,
    }
    first = token_post(provider, portal, "/token", **form)
    assert first.status_code == 200, describe(first)
    tokens = first.json()
    replay = token_post(provider, portal, "/token", **form)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    for value in (tokens["access_token"], tokens["refresh_token"]):
        assert token_post(provider, portal, "/introspect", token=value).json() == {"active": False}


# --- prompt and max_age -----------------------------------------------------------------------
def test_each_prompt_value_and_max_age_zero(
    provider: Provider, district: District, discovery: dict[str, Any], portal: Portal, third_party: Portal
) -> None:
    with requests.Session() as browser:
        assert authorize_error(browser, provider, portal, prompt="none") == "login_required"
        code_flow(provider, district, discovery, portal, browser)
        # prompt=none with a session: a code, silently.
        assert authorize_error(browser, provider, portal, prompt="none") is None
        # prompt=login and max_age=0: back to the sign-in page despite the session.
        for extra in ({"prompt": "login"}, {"max_age": "0"}):
            auth = AuthRequest(portal.client_id, redirect_uri=portal.redirect_uri, extra=extra)
            start_authorization(browser, auth.url(provider.url))
        # A third-party portal: prompt=none needs consent first; prompt=consent shows the page.
        assert authorize_error(browser, provider, third_party, prompt="none") == "consent_required"
        auth = AuthRequest(
            third_party.client_id, redirect_uri=third_party.redirect_uri, scope="openid profile"
        )
        with get(browser, auth.url(provider.url)) as page:
            assert page.status_code == 200 and 'value="Allow"' in page.text, describe(page)
            html = page.text
        allowed = browser.post(
            f"{provider.url}/authorize/consent",
            data={
                "csrf_token": csrf_token(html),
                "request_id": hidden_field(html, "request_id"),
                "allow": "Allow",
            },
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
        assert allowed.status_code == 302 and "code=" in allowed.headers["Location"], describe(allowed)
        again = AuthRequest(
            third_party.client_id, redirect_uri=third_party.redirect_uri, scope="openid profile"
        )
        with get(browser, again.url(provider.url) + "&prompt=consent") as page:
            assert page.status_code == 200 and 'value="Allow"' in page.text, describe(page)


# --- logout -----------------------------------------------------------------------------------
def test_logout_signs_out_tells_the_portal_and_prompt_none_then_needs_login(
    provider: Provider, district: District, discovery: dict[str, Any], portal: Portal, receiver: Receiver
) -> None:
    already = len(receiver.received)
    with requests.Session() as browser:
        token = code_flow(provider, district, discovery, portal, browser)
        keys = jwks_of(provider)
        id_claims = jwt.decode(token["id_token"], keys, algorithms=["RS256"]).claims
        response = get(
            browser,
            f"{discovery['end_session_endpoint']}?"
            + requests.compat.urlencode(
                {"id_token_hint": token["id_token"], "post_logout_redirect_uri": POST_LOGOUT, "state": "bye"}
            ),
        )
        with response:
            assert response.status_code == 303, describe(response)
            assert response.headers["Location"] == POST_LOGOUT + "?state=bye"
        assert authorize_error(browser, provider, portal, prompt="none") == "login_required"

    received = receiver.wait_for(already + 1)[already:]
    assert len(received) == 1
    decoded = jwt.decode(received[0].form["logout_token"][0], keys, algorithms=["RS256"])
    claims = decoded.claims
    assert decoded.header["typ"] == "logout+jwt"
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": provider.url},
        aud={"essential": True, "value": portal.client_id},
        iat={"essential": True},
        jti={"essential": True},
    ).validate(claims)
    assert claims["events"] == {BACKCHANNEL_EVENT: {}}
    assert claims["sid"] == id_claims["sid"]
    assert claims["sub"] == id_claims["sub"]
    assert "nonce" not in claims


def test_logout_without_hint_asks_before_signing_out(
    provider: Provider, district: District, discovery: dict[str, Any], portal: Portal
) -> None:
    with requests.Session() as browser:
        code_flow(provider, district, discovery, portal, browser)
        with get(browser, f"{provider.url}/logout") as page:
            assert page.status_code == 200 and ">Sign Out</button>" in page.text, describe(page)
            html = page.text
        assert authorize_error(browser, provider, portal, prompt="none") is None  # still signed in
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))
        done = browser.post(
            f"{provider.url}/logout",
            data={**fields, "csrf_token": csrf_token(html)},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
        assert done.status_code == 200 and "You have been signed out." in done.text, describe(done)
        assert authorize_error(browser, provider, portal, prompt="none") == "login_required"


def test_logout_with_an_unregistered_redirect_is_refused(
    provider: Provider, district: District, discovery: dict[str, Any], portal: Portal
) -> None:
    with requests.Session() as browser:
        token = code_flow(provider, district, discovery, portal, browser)
        url = f"{provider.url}/logout?" + requests.compat.urlencode(
            {"id_token_hint": token["id_token"], "post_logout_redirect_uri": "https://evil.example.test/"}
        )
        with get(browser, url) as response:
            assert response.status_code == 400 and "Location" not in response.headers
        assert authorize_error(browser, provider, portal, prompt="none") is None
