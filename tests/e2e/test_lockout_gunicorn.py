"""Lockout across real gunicorn processes sharing the real Redis: one count, whichever process answers."""

from __future__ import annotations

import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import create_engine, func, select

from idp.audit import AuditEvent
from tests.conftest import csrf_token
from tests.e2e.conftest import HTTP_TIMEOUT, District, Provider, ProviderPool, provider_env, run_idp

pytestmark = pytest.mark.e2e

THRESHOLD = 10
LOCK_SECONDS = 5
INVALID = "Invalid username or password."
LOCKED = re.compile(
    r"This account is locked because of too many failed sign-in attempts\. Try again in \d+ minutes?\."
)
VERIFIES = re.compile(r"^idp_argon2_verifications_total (\d+)(?:\.0)?$", re.MULTILINE)
# The provider's real argon2 cost (tens of milliseconds a verify), so that attempts truly overlap:
# with the tests' cheap hashing, a check-then-count race could hide behind requests that finish
# one after another.
REAL_ARGON2 = {"IDP_ARGON2_TIME_COST": "2", "IDP_ARGON2_MEMORY_KIB": "19456"}
USERNAME = "Lee.Rivera"


def create_parent(district: District) -> None:
    """A parent whose password hash has the real cost (the district's was made cheap)."""
    env = provider_env(district.database_url, district.keys_dir, issuer="http://127.0.0.1", **REAL_ARGON2)
    run_idp(
        env,
        *("accounts", "create", "--username", USERNAME, "--email", "lee@example.org"),
        *("--password", district.password, "--first-name", "Lee", "--last-name", "Rivera"),
    )


def start_pair(start_providers: ProviderPool, district: District) -> list[Provider]:
    """Two gunicorn processes (one threaded worker each) with counters of this test's own."""
    return start_providers.start(
        district.database_url,
        district.keys_dir,
        count=2,
        workers=1,
        threads=8,
        IDP_REDIS_KEY_PREFIX=f"idp-e2e-lockout:{secrets.token_hex(6)}:",
        IDP_LOCKOUT_THRESHOLD=str(THRESHOLD),
        IDP_LOCKOUT_SECONDS=str(LOCK_SECONDS),
        IDP_RATE_LIMIT_SIGNIN="10000/minute",
        IDP_ARGON2_MAX_CONCURRENT="8",
        **REAL_ARGON2,
    )


def argon2_verifies(providers: list[Provider]) -> int:
    """Sum the argon2 verifications each process has counted (its /metrics)."""
    total = 0
    for provider in providers:
        response = requests.get(f"{provider.url}/metrics", timeout=HTTP_TIMEOUT)
        match = VERIFIES.search(response.text)
        assert response.status_code == 200 and match, response.text[:500]
        total += int(match.group(1))
    return total


def signin_form(browser: requests.Session, provider: Provider) -> dict[str, str]:
    page = browser.get(f"{provider.url}/signin", timeout=HTTP_TIMEOUT)
    assert page.status_code == 200
    return {"csrf_token": csrf_token(page.text), "request_id": ""}


def post_signin(
    browser: requests.Session, provider: Provider, username: str, password: str
) -> requests.Response:
    form = {**signin_form(browser, provider), "username": username, "password": password}
    return browser.post(f"{provider.url}/signin", data=form, allow_redirects=False, timeout=HTTP_TIMEOUT)


def account_locked_events(district: District) -> int:
    engine = create_engine(district.database_url)
    try:
        with engine.connect() as conn:
            query = select(func.count()).select_from(AuditEvent).where(AuditEvent.name == "account.locked")
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def test_fifty_concurrent_wrong_passwords_over_two_processes_count_exactly_the_threshold(
    district: District, start_providers: ProviderPool
) -> None:
    create_parent(district)
    providers = start_pair(start_providers, district)
    with requests.Session() as parent:
        # The parent's own browser signed in before the attack: it holds a device cookie.
        assert post_signin(parent, providers[0], USERNAME, district.password).status_code == 303
        assert any(cookie.name == "idp_device" for cookie in parent.cookies)

        attackers = [requests.Session() for _ in range(50)]
        forms = [signin_form(s, providers[i % 2]) for i, s in enumerate(attackers)]
        locked_before = account_locked_events(district)
        verifies_before = argon2_verifies(providers)
        barrier = threading.Barrier(50)

        def attack(i: int) -> requests.Response:
            form = {**forms[i], "username": f"  {USERNAME.upper()}", "password": f"guess-{i}"}
            barrier.wait(10)
            # Posted to the other process than the one that served the form.
            return attackers[i].post(
                f"{providers[(i + 1) % 2].url}/signin", data=form, allow_redirects=False, timeout=HTTP_TIMEOUT
            )

        with ThreadPoolExecutor(max_workers=50) as pool:
            responses = list(pool.map(attack, range(50)))
        for session in attackers:
            session.close()

        assert [r.status_code for r in responses] == [200] * 50, [r.status_code for r in responses]
        invalid = sum(INVALID in r.text for r in responses)
        locked = sum(bool(LOCKED.search(r.text)) for r in responses)
        assert invalid + locked == 50
        # The attempt that reaches the threshold may show either message; here it is counted as failed.
        assert THRESHOLD - 1 <= invalid <= THRESHOLD
        assert argon2_verifies(providers) - verifies_before == THRESHOLD
        assert account_locked_events(district) == locked_before + 1
        locked_at = time.monotonic()

        # The right password is refused while locked, on either process, with no argon2 work.
        with requests.Session() as stranger:
            for provider in providers:
                refused = post_signin(stranger, provider, USERNAME, district.password)
                assert refused.status_code == 200 and LOCKED.search(refused.text)
        assert argon2_verifies(providers) - verifies_before == THRESHOLD

        # The parent's browser, trusted by its device cookie, still signs in.
        for provider in providers:
            assert post_signin(parent, provider, USERNAME, district.password).status_code == 303

    # Once the lock has run out, the right password works from any browser again.
    time.sleep(max(0.0, LOCK_SECONDS + 0.2 - (time.monotonic() - locked_at)))
    with requests.Session() as later:
        assert post_signin(later, providers[1], USERNAME, district.password).status_code == 303
