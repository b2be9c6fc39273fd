"""The provider as deployed: gunicorn processes over one database and one keys folder, spoken to over HTTP."""

from __future__ import annotations

import json
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.discovery import OpenIDProviderMetadata

from tests.conftest import AuthRequest, redirect_params
from tests.e2e.conftest import HTTP_TIMEOUT, District, Provider, ProviderPool
from tests.e2e.flows import (
    continue_authorization,
    describe,
    fetch_json,
    obtain_code,
    redeem,
    sign_in,
    start_authorization,
    verify_id_token,
)

pytestmark = pytest.mark.e2e


def expected_students(district: District) -> list[dict[str, str]]:
    student = district.student
    return [
        {
            "id": student.sis_id,
            "given_name": student.first_name,
            "family_name": student.last_name,
            "school_id": student.school,
            # ``idp students create`` names a school it does not know by its code.
            "school_name": student.school,
            "relationship": student.relationship,
        }
    ]


def test_standard_client_completes_code_flow(
    provider: Provider, district: District, monkeypatch: pytest.MonkeyPatch
) -> None:
    with requests.Session() as http:
        discovery = fetch_json(http, f"{provider.url}/.well-known/openid-configuration")
        jwks = fetch_json(http, discovery["jwks_uri"])
    assert discovery["issuer"] == provider.url
    # Authlib's own reading of OIDC Discovery 1.0 (it wants https unless told this is a test).
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    OpenIDProviderMetadata(discovery).validate()
    state, nonce, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(16), secrets.token_urlsafe(48)

    with (
        OAuth2Session(
            district.client_id,
            district.client_secret,
            scope="openid profile email students",
            redirect_uri=district.redirect_uri,
            code_challenge_method="S256",
        ) as portal,
        requests.Session() as browser,
    ):
        url, _ = portal.create_authorization_url(
            discovery["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
        )
        request_id = start_authorization(browser, url)
        path = sign_in(
            browser,
            page_url=provider.url,
            post_url=provider.url,
            request_id=request_id,
            username=district.username,
            password=district.password,
        )
        location = continue_authorization(browser, provider.url, path, district.redirect_uri)
        assert redirect_params(location)["state"] == state
        # Authlib parses the redirect (and checks state), then redeems with client_secret_basic.
        tokens = portal.fetch_token(
            discovery["token_endpoint"],
            authorization_response=location,
            state=state,
            code_verifier=verifier,
        )
        userinfo = portal.get(discovery["userinfo_endpoint"], timeout=HTTP_TIMEOUT)

    assert tokens["token_type"].lower() == "bearer"
    id_token = verify_id_token(
        tokens["id_token"], jwks, issuer=provider.url, client_id=district.client_id, nonce=nonce
    )
    claims = id_token.claims
    assert id_token.header["kid"] in {key["kid"] for key in jwks["keys"]}
    assert claims["exp"] > time.time()
    assert claims["student_ids"] == [district.student.sis_id]
    assert claims["students"] == expected_students(district)

    with userinfo:
        assert userinfo.status_code == 200, describe(userinfo)
        info = userinfo.json()
    assert info["sub"] == claims["sub"]
    assert info["student_ids"] == [district.student.sis_id]
    assert info["students"] == expected_students(district)


def test_two_processes_serve_one_sign_in(
    provider: Provider, district: District, start_providers: ProviderPool
) -> None:
    a = provider
    # Behind a load balancer every process has the one public issuer: A's URL here.
    (b,) = start_providers.start(district.database_url, district.keys_dir, issuer=a.url)
    auth = AuthRequest(district.client_id, redirect_uri=district.redirect_uri)

    with requests.Session() as browser, requests.Session() as portal:
        request_id = start_authorization(browser, auth.url(a.url))
        # The form comes from A and is posted to B: CSRF and the pending request live in shared state.
        path = sign_in(
            browser,
            page_url=a.url,
            post_url=b.url,
            request_id=request_id,
            username=district.username,
            password=district.password,
        )
        params = redirect_params(continue_authorization(browser, a.url, path, auth.redirect_uri))
        assert params["state"] == auth.state

        response = redeem(portal, b.url, auth, params["code"], district)
        with response:
            assert response.status_code == 200, describe(response)
            tokens = response.json()
        userinfo = portal.get(
            f"{a.url}/userinfo",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
            timeout=HTTP_TIMEOUT,
        )
        with userinfo:
            assert userinfo.status_code == 200, describe(userinfo)
            info = userinfo.json()
        jwks_a = fetch_json(portal, f"{a.url}/jwks.json")
        jwks_b = fetch_json(portal, f"{b.url}/jwks.json")
        assert fetch_json(portal, f"{b.url}/.well-known/openid-configuration")["issuer"] == a.url

    assert jwks_a == jwks_b
    assert len(jwks_a["keys"]) >= 2
    for jwks in (jwks_a, jwks_b):
        token = verify_id_token(
            tokens["id_token"], jwks, issuer=a.url, client_id=district.client_id, nonce=auth.nonce
        )
        assert token.claims["sub"] == info["sub"]
    assert info["student_ids"] == [district.student.sis_id]


def test_concurrent_redemptions_of_one_code_yield_one_token(provider: Provider, district: District) -> None:
    auth = AuthRequest(district.client_id, redirect_uri=district.redirect_uri)
    code = obtain_code(provider.url, auth, district)
    attempts = 8
    # 2 workers x 4 threads: all eight requests can be inside the provider at once.
    barrier = threading.Barrier(attempts)

    def redeem_once(_: int) -> tuple[int, dict[str, object]]:
        with requests.Session() as portal:
            # Connect first, so that the barrier releases requests rather than TCP handshakes.
            fetch_json(portal, f"{provider.url}/healthz")
            barrier.wait(timeout=HTTP_TIMEOUT)
            response = redeem(portal, provider.url, auth, code, district)
            with response:
                return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        results = list(pool.map(redeem_once, range(attempts)))

    # (status, error) only: a failure message with eight tokens in it would be unreadable.
    outcomes = sorted((status, str(body.get("error", "tokens"))) for status, body in results)
    assert outcomes == [(200, "tokens")] + [(400, "invalid_grant")] * (attempts - 1), outcomes
    (winner,) = [body for status, body in results if status == 200]
    assert winner["id_token"] and winner["access_token"]


def test_workers_starting_together_make_one_key_set(
    district: District, start_providers: ProviderPool, tmp_path: Path
) -> None:
    keys_dir = tmp_path / "empty-keys"
    keys_dir.mkdir()
    # A long manifest check interval: a process that loaded another key set would keep serving it.
    providers = start_providers.start(district.database_url, keys_dir, count=3, IDP_KEYS_CHECK_SECONDS="3600")

    manifest = json.loads((keys_dir / "manifest.json").read_text())
    entries = manifest["keys"]
    assert sorted((entry["alg"], entry["state"]) for entry in entries) == [
        ("ES256", "active"),
        ("ES256", "next"),
        ("RS256", "active"),
        ("RS256", "next"),
    ]
    # One set was made: exactly its four key files, no second manifest or leftover temporary file.
    files = {path.name for path in keys_dir.iterdir() if not path.name.endswith(".lock")}
    assert files == {"manifest.json"} | {entry["file"] for entry in entries}

    with requests.Session() as http:
        served = [fetch_json(http, f"{p.url}/jwks.json") for p in providers]
    assert all(jwks == served[0] for jwks in served), served
    assert {key["kid"] for key in served[0]["keys"]} == {entry["kid"] for entry in entries}
