"""Redis stops in the middle of the day: sign-in goes on and still limits, then Redis is used again."""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import csrf_token
from tests.e2e.conftest import HTTP_TIMEOUT, District, Provider, ProviderPool
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

SIGNIN_LIMIT = 12
LOCKED = re.compile(r"This account is locked because of too many failed sign-in attempts\.")
OUTAGE_LOG_LINE = "Redis is unavailable"


def post_signin(provider: Provider, username: str, password: str) -> requests.Response:
    with requests.Session() as browser:
        page = browser.get(f"{provider.url}/signin", timeout=HTTP_TIMEOUT)
        assert page.status_code == 200, page.text[:300]
        form = {
            "csrf_token": csrf_token(page.text),
            "request_id": "",
            "username": username,
            "password": password,
        }
        return browser.post(f"{provider.url}/signin", data=form, allow_redirects=False, timeout=HTTP_TIMEOUT)


def fallback_active(provider: Provider) -> bool:
    text = requests.get(f"{provider.url}/metrics", timeout=HTTP_TIMEOUT).text
    match = re.search(r"^idp_redis_fallback_active (\d)(?:\.0)?$", text, re.MULTILINE)
    assert match, text[:300]
    return match.group(1) == "1"


def test_signin_survives_a_redis_outage_and_uses_redis_again(
    district: District, start_providers: ProviderPool, tmp_path: Path
) -> None:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    prefix = f"idp-e2e-outage:{secrets.token_hex(6)}:"
    try:
        (provider,) = start_providers.start(
            district.database_url,
            district.keys_dir,
            workers=1,
            threads=4,
            IDP_REDIS_URL=redis_server.url,
            IDP_REDIS_KEY_PREFIX=prefix,
            IDP_LOCKOUT_THRESHOLD="3",
            IDP_RATE_LIMIT_SIGNIN=f"{SIGNIN_LIMIT}/minute",
        )
        assert post_signin(provider, district.username, district.password).status_code == 303
        assert redis_server.keys(f"{prefix}*"), "the counters live in Redis while it is up"
        assert not fallback_active(provider)

        redis_server.stop()
        statuses: list[int] = []

        def signin(username: str, password: str) -> requests.Response:
            response = post_signin(provider, username, password)
            statuses.append(response.status_code)
            return response

        # Sign-in still answers, on the database's counters.
        assert signin(district.username, district.password).status_code == 303
        ready = requests.get(f"{provider.url}/readyz", timeout=HTTP_TIMEOUT)
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "degraded", "database": "ok", "keys": "ok", "redis": "degraded"}
        assert fallback_active(provider)
        # ... and still locks ...
        for _ in range(3):
            assert "Invalid username or password." in signin("sam.nobody", "wrong").text
        assert LOCKED.search(signin("sam.nobody", "wrong").text)
        # ... and still rate-limits: the outage's POSTs so far, then the rest of the limit, then 429.
        while len(statuses) < SIGNIN_LIMIT:
            assert signin("sam.nobody", "wrong").status_code == 200
        limited = signin("sam.nobody", "wrong")
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert set(statuses) <= {200, 303, 429}  # never a 500

        redis_server.start()  # the same port, empty: the outage's counts stay in the database
        deadline = time.monotonic() + 10
        while fallback_active(provider):
            assert time.monotonic() < deadline, "the provider did not go back to Redis"
            time.sleep(0.2)
            requests.get(f"{provider.url}/readyz", timeout=HTTP_TIMEOUT)
        assert post_signin(provider, district.username, district.password).status_code == 303
        assert redis_server.keys(f"{prefix}*"), "the counters are in Redis again"
        assert requests.get(f"{provider.url}/readyz", timeout=HTTP_TIMEOUT).json()["status"] == "ok"
        # The outage was logged when it began, not once per failed command.
        assert provider.log().count(OUTAGE_LOG_LINE) == 1, provider.log()
    finally:
        redis_server.stop()
