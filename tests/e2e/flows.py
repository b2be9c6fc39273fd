"""The browser's and the portal's parts of a sign-in, over real HTTP with ``requests``.

Each step names the process it talks to, so a test can spread one sign-in over several.
Redirects are never followed automatically: every hop's status and Location are checked.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.conftest import AuthRequest, csrf_token, hidden_field, redirect_params
from tests.e2e.conftest import HTTP_TIMEOUT, District


def describe(response: requests.Response) -> str:
    return f"{response.request.method} {response.url} -> {response.status_code}: {response.text[:800]}"


def start_authorization(browser: requests.Session, authorize_url: str) -> str:
    """GET /authorize without a session: 303 to /signin?request=<id>; return the request id."""
    response = browser.get(authorize_url, allow_redirects=False, timeout=HTTP_TIMEOUT)
    with response:
        assert response.status_code == 303, describe(response)
        location = response.headers["Location"]
    assert urlsplit(location).path == "/signin", location
    return redirect_params(location)["request"]


def sign_in(
    browser: requests.Session,
    *,
    page_url: str,
    post_url: str,
    request_id: str,
    username: str,
    password: str,
) -> str:
    """Load the sign-in page from ``page_url``, post it to ``post_url``; return the continue path."""
    page = browser.get(
        f"{page_url}/signin", params={"request": request_id}, allow_redirects=False, timeout=HTTP_TIMEOUT
    )
    with page:
        assert page.status_code == 200, describe(page)
        html = page.text
    assert hidden_field(html, "request_id") == request_id
    form = {
        "csrf_token": csrf_token(html),
        "request_id": hidden_field(html, "request_id"),
        "username": username,
        "password": password,
    }
    response = browser.post(f"{post_url}/signin", data=form, allow_redirects=False, timeout=HTTP_TIMEOUT)
    with response:
        assert response.status_code == 303, describe(response)
        location = response.headers["Location"]
    assert urlsplit(location).path == f"/authorize/continue/{request_id}", location
    return location


def continue_authorization(browser: requests.Session, base_url: str, path: str, redirect_uri: str) -> str:
    """GET the continue URL: 302 to the portal's redirect URI; return that Location unfollowed."""
    response = browser.get(base_url + urlsplit(path).path, allow_redirects=False, timeout=HTTP_TIMEOUT)
    with response:
        assert response.status_code == 302, describe(response)
        location = response.headers["Location"]
    assert location.startswith(redirect_uri + "?"), location
    return location


def obtain_code(base_url: str, auth: AuthRequest, district: District) -> str:
    """Run the browser part of a sign-in against one process and return the authorization code."""
    with requests.Session() as browser:
        request_id = start_authorization(browser, auth.url(base_url))
        path = sign_in(
            browser,
            page_url=base_url,
            post_url=base_url,
            request_id=request_id,
            username=district.username,
            password=district.password,
        )
        location = continue_authorization(browser, base_url, path, auth.redirect_uri)
    params = redirect_params(location)
    assert params["state"] == auth.state
    return params["code"]


def redeem(
    http: requests.Session, base_url: str, auth: AuthRequest, code: str, district: District
) -> requests.Response:
    """POST the code to /token as the portal: client_secret_basic, redirect URI and PKCE verifier."""
    return http.post(
        f"{base_url}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": auth.redirect_uri,
            "code_verifier": auth.verifier,
        },
        auth=(district.client_id, district.client_secret),
        allow_redirects=False,
        timeout=HTTP_TIMEOUT,
    )


def fetch_json(http: requests.Session, url: str) -> Any:
    response = http.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT)
    with response:
        assert response.status_code == 200, describe(response)
        return response.json()


def verify_id_token(id_token: str, jwks: Any, *, issuer: str, client_id: str, nonce: str) -> Any:
    """Verify signature (RS256 only), iss, aud, nonce and exp the way a portal must; return the token."""
    token = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        nonce={"essential": True, "value": nonce},
        exp={"essential": True},
        sub={"essential": True},
    ).validate(token.claims)
    return token
