"""One provider, two gunicorn workers: one scrape of /metrics counts what both answered, and every
line the instance logs is a JSON object, each request's carrying the id it answered with."""

from __future__ import annotations

import json
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.conftest import csrf_token
from tests.e2e.conftest import HTTP_TIMEOUT, District, Provider, ProviderPool

# The instance's processes, not the database, are the subject: one backend is enough.
pytestmark = [pytest.mark.e2e, pytest.mark.e2e_backends("postgresql")]

METRICS_TOKEN = secrets.token_urlsafe(24)
MAX_REQUESTS = 400
BATCH = 8


def log_lines(provider: Provider) -> list[dict[str, Any]]:
    lines = []
    for line in provider.log().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a line that is not JSON: {line!r}")
    return lines


def request_lines(provider: Provider, path: str) -> list[dict[str, Any]]:
    return [
        line for line in log_lines(provider) if line.get("logger") == "idp.request" and line["path"] == path
    ]


def scrape(provider: Provider) -> str:
    response = requests.get(
        f"{provider.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=HTTP_TIMEOUT
    )
    assert response.status_code == 200, response.text[:300]
    return response.text


def sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{name} not in:\n{text[:2000]}"
    return float(match.group(1))


def failed_signin(provider: Provider, username: str, password: str) -> requests.Response:
    with requests.Session() as browser:
        page = browser.get(f"{provider.url}/signin", timeout=HTTP_TIMEOUT)
        form = {
            "csrf_token": csrf_token(page.text),
            "request_id": "",
            "username": username,
            "password": password,
        }
        return browser.post(f"{provider.url}/signin", data=form, allow_redirects=False, timeout=HTTP_TIMEOUT)


def test_one_scrape_counts_both_workers_and_every_line_is_json(
    district: District, start_providers: ProviderPool
) -> None:
    (provider,) = start_providers.start(
        district.database_url,
        district.keys_dir,
        workers=2,
        IDP_LOG_FORMAT="json",
        IDP_METRICS_TOKEN=METRICS_TOKEN,
        IDP_METRICS_ALLOW="",  # the token alone, even from this host
    )

    def ask(n: int) -> requests.Response:
        # No bearer token: 401, still a UserInfo request timed by the worker that answers it.
        return requests.get(
            f"{provider.url}/userinfo", headers={"X-Request-ID": f"e2e-{n}"}, timeout=HTTP_TIMEOUT
        )

    sent: list[requests.Response] = []
    with ThreadPoolExecutor(max_workers=BATCH) as pool:
        # Concurrent requests reach both workers (each sync worker answers one at a time).
        while len({line["pid"] for line in request_lines(provider, "/userinfo")}) < 2:
            assert len(sent) < MAX_REQUESTS, "every request went to one worker"
            sent += pool.map(ask, range(len(sent), len(sent) + BATCH))
    wrong_password = f"wrong-{secrets.token_hex(8)}"
    assert failed_signin(provider, district.username, wrong_password).status_code == 200

    refused = requests.get(f"{provider.url}/metrics", timeout=HTTP_TIMEOUT)
    assert refused.status_code == 403
    # Whichever worker answers the scrape, it counts both workers' requests.
    for text in [scrape(provider) for _ in range(4)]:
        assert sample(text, "idp_userinfo_duration_seconds_count") == len(sent)
        assert sample(text, 'idp_signins_total{outcome="failure"}') == 1
        assert sample(text, "idp_signin_duration_seconds_count") == 1

    lines = request_lines(provider, "/userinfo")
    assert len(lines) == len(sent) and len({line["pid"] for line in lines}) == 2
    assert sorted(line["request_id"] for line in lines) == sorted(
        response.headers["X-Request-ID"] for response in sent
    )
    assert {line["request_id"] for line in lines} == {f"e2e-{n}" for n in range(len(sent))}
    assert all(line["status"] == 401 and line["method"] == "GET" for line in lines)
    (signin,) = [line for line in request_lines(provider, "/signin") if line["method"] == "POST"]
    audited = [line for line in log_lines(provider) if line.get("event") == "signin.failed"]
    assert audited and all(line["request_id"] == signin["request_id"] for line in audited)
    text = provider.log()
    assert wrong_password not in text and METRICS_TOKEN not in text
