"""The database key store under gunicorn: two processes of two workers each share one key set
without a shared folder, and a rotation by the real ``idp keys`` reaches every one of them.

On SQLite this also shows that a worker checks the key set while its request holds the write
lock (the token endpoint signs after consuming the code) without waiting for itself. SQLite
only: on PostgreSQL, two instances on the database store are shown picking up a rotation behind
a TLS proxy, through PgBouncer, in tests/e2e/test_multi_instance.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from joserfc import jws
from sqlalchemy import create_engine, delete

from idp.keys.models import KeySetRow, SigningKeyRow
from tests.conftest import AuthRequest
from tests.e2e.conftest import District, Provider, ProviderPool, provider_env, run_idp
from tests.e2e.flows import describe, fetch_json, obtain_code, redeem

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_backends("sqlite")]

STORE_ENV = {
    "IDP_KEYS_STORE": "database",
    "IDP_KEYS_PASSPHRASE": "the e2e district's key passphrase",
    "IDP_KEYS_CHECK_SECONDS": "1",
    "IDP_JWKS_MAX_AGE": "1",
    "IDP_RATE_LIMIT_SIGNIN": "100000/minute",
    "IDP_RATE_LIMIT_TOKEN": "100000/minute",
}
# A bound on waiting for every worker to switch, far above DESIGN's 5 s; never a measured figure.
PICKUP_TIMEOUT = 60.0


def empty_key_tables(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(delete(SigningKeyRow))
            conn.execute(delete(KeySetRow))
    finally:
        engine.dispose()


def kid_of(token: str) -> str:
    value: str = jws.extract_compact(token.encode()).headers()["kid"]
    return value


def signing_kid(provider: Provider, district: District) -> str:
    auth = AuthRequest(district.client_id, redirect_uri=district.redirect_uri)
    code = obtain_code(provider.url, auth, district)
    with requests.Session() as http, redeem(http, provider.url, auth, code, district) as response:
        assert response.status_code == 200, describe(response)
        return kid_of(response.json()["id_token"])


def published(provider: Provider) -> set[str]:
    with requests.Session() as http:
        return {key["kid"] for key in fetch_json(http, f"{provider.url}/jwks.json")["keys"]}


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PICKUP_TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {PICKUP_TIMEOUT} s: {what}")
        time.sleep(0.2)


def test_processes_on_the_database_store_share_one_key_set_and_all_pick_up_a_rotation(
    district: District, start_providers: ProviderPool, tmp_path: Path
) -> None:
    empty_key_tables(district.database_url)
    unused_folder = tmp_path / "no-keys-here"
    # Four workers start together on empty key tables: one of them makes the set.
    a, b = start_providers.start(
        district.database_url, unused_folder, count=2, workers=2, behind_one_issuer=True, **STORE_ENV
    )
    operator = provider_env(district.database_url, unused_folder, issuer="http://127.0.0.1", **STORE_ENV)
    first = json.loads(run_idp(operator, "keys", "list", "--json"))
    assert sorted((k["alg"], k["state"]) for k in first) == [
        ("ES256", "active"),
        ("ES256", "next"),
        ("RS256", "active"),
        ("RS256", "next"),
    ]
    kids = {k["kid"] for k in first}
    old_active = next(k["kid"] for k in first if k["alg"] == "RS256" and k["state"] == "active")
    for _ in range(4):  # any worker of either process answers with the same set
        assert published(a) == published(b) == kids
    assert signing_kid(a, district) == signing_kid(b, district) == old_active
    assert not list(unused_folder.glob("*.pem"))

    output = run_idp(operator, "keys", "rotate", "--alg", "RS256", "--force")

    after = json.loads(run_idp(operator, "keys", "list", "--json"))
    new_active = next(k["kid"] for k in after if k["alg"] == "RS256" and k["state"] == "active")
    new_next = next(k["kid"] for k in after if k["alg"] == "RS256" and k["state"] == "next")
    assert output.startswith(f"RS256: {new_active} signs now; {old_active} retired"), output
    # Every worker switches: several sign-ins in a row at each process all carry the new kid.
    wait_until(
        lambda: all(signing_kid(p, district) == new_active for p in (a, b, a, b, a, b, a, b)),
        "every worker signing with the promoted key",
    )
    wait_until(
        lambda: all({old_active, new_active, new_next} <= published(p) for p in (a, b, a, b)),
        "every worker publishing the retired, active and new next keys",
    )
