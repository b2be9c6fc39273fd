"""/userinfo refuses any token that is not a live access token of ours; discovery and JWKS tell the truth."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.errors import UnsupportedAlgorithmError
from joserfc.jwk import ECKey, KeySet, RSAKey
from werkzeug.test import TestResponse

from tests.conftest import AuthRequest
from tests.functional.oidc import authorize_as, redeem

ISSUER = "http://localhost"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def unique_username() -> str:
    return f"user-{secrets.token_hex(4)}"


@pytest.fixture
def tokens(client, make_account, make_client) -> dict[str, Any]:
    """A token response for a fresh sign-in through a first-party portal."""
    username = unique_username()
    make_account(username=username)
    portal = make_client()
    auth = AuthRequest(portal.client_id)
    code = authorize_as(client, auth, username)["code"]
    response = redeem(client, auth, code, portal.client_secret)
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def segment(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def header_of(token: str) -> dict[str, Any]:
    return segment(token, 0)


def access_claims_like(access_token: str) -> dict[str, Any]:
    """The claims of a real access token, to forge look-alikes that differ only in the key."""
    return segment(access_token, 1)


def assert_invalid_token(response: TestResponse, description: str | None = None) -> dict[str, Any]:
    assert response.status_code == 401, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == "invalid_token"
    if description is not None:
        assert body["error_description"] == description
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge
    assert "sub" not in body
    return dict(body)


# --- /userinfo --------------------------------------------------------------------------------
def test_userinfo_with_a_valid_access_token_answers_claims(client, tokens):
    response = client.get("/userinfo", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json()["sub"]


def test_userinfo_without_authorization_header_is_401_bearer_challenge(client):
    response = client.get("/userinfo")
    assert response.status_code == 401
    assert response.mimetype == "application/json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "sub" not in response.get_json()


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "Token abc", "bearer"],
    ids=["basic", "bearer-alone", "bearer-blank", "other-scheme", "lowercase-alone"],
)
def test_userinfo_without_a_bearer_token_is_401_bearer_challenge(client, header):
    response = client.get("/userinfo", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.mimetype == "application/json"


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "....",
        "eyJhbGciOiJSUzI1NiJ9.e30.",
        "\u00e9\u00e8.\u00e0.\u00fc",
        "x" * 9000,
    ],
    ids=["word", "three-parts", "dots", "unsigned", "non-ascii", "huge"],
)
def test_userinfo_with_a_garbage_token_is_401_invalid_token(client, token):
    assert_invalid_token(client.get("/userinfo", headers=bearer(token)))


def test_userinfo_with_a_token_signed_by_a_foreign_key_is_401(client, tokens):
    claims = access_claims_like(tokens["access_token"])
    foreign = RSAKey.generate_key(2048, parameters={"kid": "foreign-key", "alg": "RS256"}, private=True)
    forged = jwt.encode({"alg": "RS256", "kid": "foreign-key", "typ": "at+jwt"}, claims, foreign)
    assert_invalid_token(client.get("/userinfo", headers=bearer(forged)))


def test_userinfo_with_a_foreign_key_claiming_our_kid_is_401(client, tokens):
    real_header = header_of(tokens["access_token"])
    claims = access_claims_like(tokens["access_token"])
    foreign = RSAKey.generate_key(2048, private=True)
    forged = jwt.encode({"alg": "RS256", "kid": real_header["kid"], "typ": "at+jwt"}, claims, foreign)
    assert_invalid_token(
        client.get("/userinfo", headers=bearer(forged)),
        "The access token is malformed or its signature is not valid.",
    )


def test_userinfo_with_an_alg_none_token_is_401(client, tokens):
    claims = access_claims_like(tokens["access_token"])
    forged = f"{b64({'alg': 'none', 'typ': 'at+jwt'})}.{b64(claims)}."
    assert_invalid_token(client.get("/userinfo", headers=bearer(forged)))


def test_userinfo_with_an_hs256_token_keyed_by_our_public_key_is_401(client, tokens):
    claims = access_claims_like(tokens["access_token"])
    public = client.get("/jwks.json").get_data()
    body = f"{b64({'alg': 'HS256', 'typ': 'at+jwt'})}.{b64(claims)}"
    signature = hmac.new(public, body.encode(), hashlib.sha256).digest()
    forged = body + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    assert_invalid_token(client.get("/userinfo", headers=bearer(forged)))


def test_userinfo_with_a_tampered_access_token_is_401(client, tokens):
    header, _payload, signature = tokens["access_token"].split(".")
    claims = access_claims_like(tokens["access_token"])
    claims["scope"] = claims["scope"] + " offline_access"
    tampered = f"{header}.{b64(claims)}.{signature}"
    assert_invalid_token(client.get("/userinfo", headers=bearer(tampered)))


def test_userinfo_with_an_expired_access_token_is_401(client, tokens, clock):
    clock.advance(timedelta(seconds=601))
    assert_invalid_token(
        client.get("/userinfo", headers=bearer(tokens["access_token"])), "The access token has expired."
    )


def test_userinfo_with_an_access_token_just_before_expiry_answers(client, tokens, clock):
    clock.advance(timedelta(seconds=599))
    assert client.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 200


def test_userinfo_refuses_an_id_token_presented_as_access_token(client, tokens):
    assert header_of(tokens["id_token"]).get("typ") != "at+jwt"
    assert_invalid_token(
        client.get("/userinfo", headers=bearer(tokens["id_token"])), "The token is not an access token."
    )


def test_userinfo_by_post_with_garbage_token_is_401(client):
    response = client.post("/userinfo", headers=bearer("garbage"))
    assert_invalid_token(response)


# --- discovery --------------------------------------------------------------------------------
@pytest.fixture
def discovery(client) -> dict[str, Any]:
    response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return dict(response.get_json())


def test_discovery_issuer_equals_the_setting(discovery, settings):
    assert discovery["issuer"] == settings.issuer == ISSUER


def test_discovery_offers_only_code_flow_with_s256(discovery):
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    assert discovery["response_types_supported"] == ["code"]
    assert "none" not in discovery["id_token_signing_alg_values_supported"]
    assert not any(alg.startswith("HS") for alg in discovery["id_token_signing_alg_values_supported"])
    assert "RS256" in discovery["id_token_signing_alg_values_supported"]


def test_discovery_lists_basic_post_and_none_client_authentication(discovery):
    assert {"client_secret_basic", "client_secret_post", "none"} <= set(
        discovery["token_endpoint_auth_methods_supported"]
    )


def test_discovery_lists_the_supported_scopes(discovery):
    assert {"openid", "profile", "email", "students"} <= set(discovery["scopes_supported"])


def endpoint_urls(discovery: dict[str, Any]) -> dict[str, str]:
    return {
        name: value
        for name, value in discovery.items()
        if (name.endswith("_endpoint") or name.endswith("_uri")) and isinstance(value, str)
    }


def test_discovery_names_the_core_endpoints(discovery):
    assert {"authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"} <= set(
        endpoint_urls(discovery)
    )


def test_every_endpoint_in_discovery_is_routable(app: Flask, client: FlaskClient, discovery):
    adapter = app.url_map.bind("localhost")
    for name, url in endpoint_urls(discovery).items():
        assert url.startswith(ISSUER + "/"), (name, url)
        path = urlsplit(url).path
        method = (
            "POST" if name in ("token_endpoint", "revocation_endpoint", "introspection_endpoint") else "GET"
        )
        adapter.match(path, method=method)  # raises NotFound / MethodNotAllowed otherwise
        response = client.open(path, method=method)
        assert response.status_code not in (404, 405, 500), (name, url, response.status_code)


# --- JWKS -------------------------------------------------------------------------------------
def test_jwks_is_cached_for_five_minutes(client):
    response = client.get("/jwks.json")
    assert response.status_code == 200
    directives = {d.strip() for d in response.headers["Cache-Control"].split(",")}
    assert "max-age=300" in directives
    assert "no-store" not in directives


def test_jwks_publishes_only_public_members_with_kid_alg_and_use(client):
    keys = client.get("/jwks.json").get_json()["keys"]
    assert keys
    for key in keys:
        assert not (PRIVATE_MEMBERS & set(key)), key
        assert key["kid"] and key["alg"] in {"RS256", "ES256"} and key["use"] == "sig"
        assert key["kty"] == ("RSA" if key["alg"] == "RS256" else "EC")
    kids = [key["kid"] for key in keys]
    assert len(kids) == len(set(kids))
    assert {key["alg"] for key in keys} == {"RS256", "ES256"}
    imported = KeySet.import_key_set({"keys": keys})
    assert all(not key.is_private for key in imported.keys)


def test_id_token_kid_is_published_in_jwks(client, tokens):
    kids = {key["kid"] for key in client.get("/jwks.json").get_json()["keys"]}
    assert header_of(tokens["id_token"])["kid"] in kids
    assert header_of(tokens["access_token"])["kid"] in kids


def test_es256_client_gets_an_es256_id_token_whose_kid_is_in_jwks(client, make_account, make_client):
    username = unique_username()
    make_account(username=username)
    portal = make_client(id_token_alg="ES256")
    auth = AuthRequest(portal.client_id)
    code = authorize_as(client, auth, username)["code"]
    response = redeem(client, auth, code, portal.client_secret)
    assert response.status_code == 200, response.get_json()
    id_token = response.get_json()["id_token"]
    header = header_of(id_token)
    assert header["alg"] == "ES256"
    jwks = client.get("/jwks.json").get_json()
    published = {key["kid"]: key for key in jwks["keys"]}
    assert header["kid"] in published
    assert published[header["kid"]]["alg"] == "ES256"
    key = ECKey.import_key(published[header["kid"]])
    token = jwt.decode(id_token, key, algorithms=["ES256"])
    assert token.claims["aud"] == portal.client_id
    assert token.claims["iss"] == ISSUER
    assert token.claims["nonce"] == auth.nonce
    with pytest.raises(UnsupportedAlgorithmError):
        jwt.decode(id_token, key, algorithms=["RS256"])
