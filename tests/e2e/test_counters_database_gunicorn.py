"""Redis stops under two real gunicorn processes: the database counts for both, exactly; Redis is
used again once it answers; and a lock set before Redis restarted empty still holds."""

from __future__ import annotations

import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, select

from idp.accounts.models import Account
from idp.audit import AuditEvent
from tests.e2e.conftest import HTTP_TIMEOUT, District, Provider, ProviderPool, provider_env, run_idp
from tests.e2e.test_lockout_gunicorn import REAL_ARGON2, argon2_verifies, post_signin, signin_form
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

THRESHOLD = 10
ATTEMPTS = 30
INVALID = "Invalid username or password."
LOCKED = re.compile(r"This account is locked because of too many failed sign-in attempts\.")


def create_parent(district: District, username: str) -> None:
    """A parent whose password hash has the real cost, so that concurrent attempts overlap."""
    env = provider_env(district.database_url, district.keys_dir, issuer="http://127.0.0.1", **REAL_ARGON2)
    run_idp(
        env,
        *("accounts", "create", "--username", username, "--email", f"{username.lower()}@example.org"),
        *("--password", district.password, "--first-name", username.split(".")[0], "--last-name", "Rivera"),
    )


def audited(district: District, username: str) -> dict[str, int]:
    """How many events of each name the audit trail holds for ``username``'s account."""
    engine = create_engine(district.database_url)
    try:
        with engine.connect() as conn:
            account_id = conn.execute(select(Account.id).where(Account.username == username)).scalar_one()
            query = (
                select(AuditEvent.name, func.count())
                .where(AuditEvent.account_id == account_id)
                .group_by(AuditEvent.name)
            )
            return {name: int(n) for name, n in conn.execute(query)}
    finally:
        engine.dispose()


def ready_checks(provider: Provider) -> dict[str, str]:
    ready = requests.get(f"{provider.url}/readyz", timeout=HTTP_TIMEOUT)
    assert ready.status_code == 200, ready.text
    checks: dict[str, str] = ready.json()
    return checks


def refuses_the_right_password(providers: list[Provider], username: str, password: str) -> bool:
    with requests.Session() as browser:
        return all(
            LOCKED.search(post_signin(browser, provider, username, password).text) for provider in providers
        )


def test_without_redis_two_processes_count_exactly_the_threshold_and_locks_outlive_a_restart(
    district: District, start_providers: ProviderPool, tmp_path: Path
) -> None:
    kim, ash = "Kim.Rivera", "Ash.Rivera"
    for username in (kim, ash):
        create_parent(district, username)
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    prefix = f"idp-e2e-dbcounters:{secrets.token_hex(6)}:"
    try:
        providers = start_providers.start(
            district.database_url,
            district.keys_dir,
            count=2,
            workers=1,
            threads=8,
            IDP_REDIS_URL=redis_server.url,
            IDP_REDIS_KEY_PREFIX=prefix,
            IDP_LOCKOUT_THRESHOLD=str(THRESHOLD),
            IDP_RATE_LIMIT_SIGNIN="10000/minute",
            IDP_ARGON2_MAX_CONCURRENT="8",
            **REAL_ARGON2,
        )
        # Ash is locked while Redis answers (the lock is copied to the database).
        with requests.Session() as stranger:
            for n in range(THRESHOLD):
                assert INVALID in post_signin(stranger, providers[n % 2], ash, f"guess-{n}").text
        assert redis_server.keys(f"{prefix}*"), "the counters live in Redis while it is up"

        redis_server.stop()
        attackers = [requests.Session() for _ in range(ATTEMPTS)]
        forms = [signin_form(s, providers[i % 2]) for i, s in enumerate(attackers)]
        verifies_before = argon2_verifies(providers)
        before = audited(district, kim)
        barrier = threading.Barrier(ATTEMPTS)

        def attack(i: int) -> requests.Response:
            form = {**forms[i], "username": kim, "password": f"guess-{i}"}
            barrier.wait(10)
            return attackers[i].post(
                f"{providers[(i + 1) % 2].url}/signin", data=form, allow_redirects=False, timeout=HTTP_TIMEOUT
            )

        with ThreadPoolExecutor(max_workers=ATTEMPTS) as pool:
            responses = list(pool.map(attack, range(ATTEMPTS)))
        for session in attackers:
            session.close()

        assert [r.status_code for r in responses] == [200] * ATTEMPTS  # no 5xx, no 429
        invalid = sum(INVALID in r.text for r in responses)
        locked = sum(bool(LOCKED.search(r.text)) for r in responses)
        assert invalid + locked == ATTEMPTS and THRESHOLD - 1 <= invalid <= THRESHOLD
        assert argon2_verifies(providers) - verifies_before == THRESHOLD
        after = audited(district, kim)
        assert after.get("signin.failed", 0) - before.get("signin.failed", 0) == THRESHOLD
        assert after.get("signin.refused", 0) - before.get("signin.refused", 0) == ATTEMPTS - THRESHOLD
        assert after.get("account.locked", 0) - before.get("account.locked", 0) == 1
        assert refuses_the_right_password(providers, kim, district.password)
        for provider in providers:
            assert ready_checks(provider) == {
                "status": "degraded",
                "database": "ok",
                "keys": "ok",
                "redis": "degraded",
            }

        redis_server.start()  # the same port, empty: Ash's lock is gone from Redis
        deadline = time.monotonic() + 10
        while any(ready_checks(provider)["redis"] != "ok" for provider in providers):
            assert time.monotonic() < deadline, "the providers did not go back to Redis"
            time.sleep(0.2)
        with requests.Session() as browser:
            assert post_signin(browser, providers[0], district.username, district.password).status_code == 303
        assert redis_server.keys(f"{prefix}*"), "the counters are in Redis again"
        assert all(ready_checks(provider)["status"] == "ok" for provider in providers)
        # Locked before the restart, or while Redis was down: the database still holds both locks.
        assert refuses_the_right_password(providers, ash, district.password)
        assert refuses_the_right_password(providers, kim, district.password)
    finally:
        redis_server.stop()
