"""Key rotation while the provider serves: two gunicorn processes, one keys folder, the real ``idp keys``.

The JWKS cache time and the manifest check interval are set to one second, so that the lead time
(2 × 1 s + 1 s) passes within the test. The grace time of a retired key is the operator's: ``idp
keys prune`` reads it from its own settings (the longest token life, plus the cache time and the
check interval), so the test prunes once with hour-long token lives (nothing may go, however long
the machine stalls) and once with one-second lives (3 s of grace, soon over).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from itertools import cycle
from pathlib import Path
from typing import Any

import pytest
import requests
from joserfc import jws
from joserfc.errors import JoseError

from tests.conftest import AuthRequest
from tests.e2e.conftest import HTTP_TIMEOUT, District, Provider, ProviderPool, provider_env, run_idp
from tests.e2e.flows import describe, fetch_json, obtain_code, redeem, verify_id_token

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_backends("postgresql")]

TIMING_ENV = {
    "IDP_JWKS_MAX_AGE": "1",
    "IDP_KEYS_CHECK_SECONDS": "1",
    "IDP_ID_TOKEN_SECONDS": "15",
    "IDP_ACCESS_TOKEN_SECONDS": "15",
    # Hundreds of sign-ins from one address in a few seconds: no rate limit may get in the way.
    "IDP_RATE_LIMIT_SIGNIN": "100000/minute",
    "IDP_RATE_LIMIT_TOKEN": "100000/minute",
}
LEAD_SECONDS = 2 * 1 + 1
# The operator's prunes: token lives of an hour (a grace time no stall outlasts), and of a second.
LONG_LIVES = {"IDP_ID_TOKEN_SECONDS": "3600", "IDP_ACCESS_TOKEN_SECONDS": "3600"}
SHORT_LIVES = {"IDP_ID_TOKEN_SECONDS": "1", "IDP_ACCESS_TOKEN_SECONDS": "1"}
SHORT_GRACE_SECONDS = 1 + 1 + 1
# DESIGN: a rotation is in use by every process within 5 s.
PICKUP_SECONDS = 5.0


def kid_of(token: str) -> str:
    value: str = jws.extract_compact(token.encode()).headers()["kid"]
    return value


def manifest(keys_dir: Path) -> list[dict[str, str]]:
    entries: list[dict[str, str]] = json.loads((keys_dir / "manifest.json").read_text())["keys"]
    return entries


def kid_in(keys_dir: Path, alg: str, state: str) -> str:
    (kid,) = [e["kid"] for e in manifest(keys_dir) if e["alg"] == alg and e["state"] == state]
    return kid


def seconds_since_epoch(entry: dict[str, str], name: str) -> float:
    return datetime.fromisoformat(entry[name]).timestamp()


def published(provider: Provider) -> set[str]:
    with requests.Session() as http:
        return {key["kid"] for key in fetch_json(http, f"{provider.url}/jwks.json")["keys"]}


def start_two(start_providers: ProviderPool, district: District, keys_dir: Path) -> tuple[Provider, Provider]:
    """Two processes behind one issuer (A's URL), as behind a load balancer, on one keys folder.

    They start together: their four workers make the folder's one key set between them.
    """
    a, b = start_providers.start(
        district.database_url, keys_dir, count=2, workers=2, behind_one_issuer=True, **TIMING_ENV
    )
    return a, b


def operator(district: District, keys_dir: Path, **lives: str) -> dict[str, str]:
    """The environment `idp keys …` runs in: the providers' settings, token lives as given."""
    return provider_env(district.database_url, keys_dir, issuer="http://127.0.0.1", **{**TIMING_ENV, **lives})


@dataclass
class Issued:
    provider: str
    requested_at: float
    answered_at: float
    kid: str


@dataclass
class Portal:
    """A relying party that caches the JWKS and fetches it again only on a kid it does not know."""

    district: District
    issuer: str
    jwks_urls: Any  # an endless cycle of the processes' JWKS URLs: the load balancer's choice
    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    fetches: list[set[str]] = field(default_factory=list)
    issued: list[Issued] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def known(self) -> set[str]:
        return {key["kid"] for key in self.jwks["keys"]}

    def verify(self, id_token: str, nonce: str) -> None:
        if kid_of(id_token) not in self.known():
            with requests.Session() as http:
                self.jwks = fetch_json(http, next(self.jwks_urls))
            self.fetches.append(self.known())
        verify_id_token(
            id_token, self.jwks, issuer=self.issuer, client_id=self.district.client_id, nonce=nonce
        )

    def sign_in_once(self, provider: Provider) -> None:
        auth = AuthRequest(self.district.client_id, redirect_uri=self.district.redirect_uri)
        requested_at = time.time()
        code = obtain_code(provider.url, auth, self.district)
        with requests.Session() as http:
            response = redeem(http, provider.url, auth, code, self.district)
            with response:
                assert response.status_code == 200, describe(response)
                id_token = response.json()["id_token"]
        answered_at = time.time()
        try:
            self.verify(id_token, auth.nonce)
        except JoseError as error:
            self.failures.append(f"{provider.url} {kid_of(id_token)}: {error!r}")
        self.issued.append(Issued(provider.url, requested_at, answered_at, kid_of(id_token)))

    def keep_signing_in(self, providers: list[Provider], stop: threading.Event) -> None:
        for provider in cycle(providers):
            if stop.is_set():
                return
            try:
                self.sign_in_once(provider)
            except Exception as error:  # recorded, and the test fails on it: the loop must go on
                self.failures.append(f"{provider.url}: {error!r}")
            stop.wait(0.05)


def wait_until(predicate: Any, timeout: float, what: str) -> float:
    """Poll ``predicate`` until it holds; return how long that took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def test_rotation_while_signing_in_fails_no_verification_and_prune_unpublishes_the_old_key(
    district: District, start_providers: ProviderPool, tmp_path: Path
) -> None:
    keys_dir = tmp_path / "keys"
    a, b = start_two(start_providers, district, keys_dir)
    old_active, promoted = kid_in(keys_dir, "RS256", "active"), kid_in(keys_dir, "RS256", "next")
    next_entry = next(e for e in manifest(keys_dir) if e["kid"] == promoted)
    with requests.Session() as http:
        response = http.get(f"{b.url}/jwks.json", timeout=HTTP_TIMEOUT)
    # The JWKS may be cached for less than the lead time: caches learn a next key before it signs.
    max_age = int(response.headers["Cache-Control"].removeprefix("public, max-age="))
    assert max_age == 1 < LEAD_SECONDS

    portal = Portal(district, a.url, cycle([f"{a.url}/jwks.json", f"{b.url}/jwks.json"]))
    stop = threading.Event()
    signer = threading.Thread(target=portal.keep_signing_in, args=([a, b], stop), daemon=True)
    signer.start()
    try:
        wait_until(
            lambda: {i.provider for i in portal.issued} == {a.url, b.url}, 30, "sign-ins at both processes"
        )
        # The first key set's next key becomes promotable once it has been published for the lead time.
        time.sleep(max(0.0, seconds_since_epoch(next_entry, "created_at") + LEAD_SECONDS + 0.2 - time.time()))
        rotate_started = time.time()
        output = run_idp(operator(district, keys_dir), "keys", "rotate")
        # The change was made (and the manifest written just after) at the promoted key's activated_at.
        rotated_at = seconds_since_epoch(
            next(e for e in manifest(keys_dir) if e["kid"] == promoted), "activated_at"
        )
        assert output.startswith(f"RS256: {promoted} signs now; {old_active} retired"), output
        kept = run_idp(operator(district, keys_dir, **LONG_LIVES), "keys", "prune")  # within its grace time
        assert f"{old_active} (retired) stays listed until" in kept, kept
        # Signing goes on for the pickup interval and a little more, then every process must have switched.
        time.sleep(max(0.0, rotated_at + PICKUP_SECONDS + 1 - time.time()))
        assert old_active in published(a) and old_active in published(b)
        retired_entry = next(e for e in manifest(keys_dir) if e["kid"] == old_active)
        grace_over = seconds_since_epoch(retired_entry, "retired_at") + SHORT_GRACE_SECONDS
        time.sleep(max(0.0, grace_over + 0.1 - time.time()))
        pruned = run_idp(operator(district, keys_dir, **SHORT_LIVES), "keys", "prune")
    finally:
        stop.set()
        signer.join(timeout=30)

    assert f"RS256: {old_active} pruned (retired); its file is deleted" in pruned.splitlines()
    unpublished_in = wait_until(
        lambda: old_active not in published(a) | published(b), PICKUP_SECONDS, "pruned key gone from JWKS"
    )
    assert portal.failures == []
    # The promoted key was in the very first JWKS the portal fetched: published before it signed.
    assert promoted in portal.fetches[0]
    for provider in (a, b):
        mine = [i for i in portal.issued if i.provider == provider.url]
        assert {i.kid for i in mine if i.answered_at < rotate_started} == {old_active}, provider.url
        # A token asked for after the pickup interval is signed with the new key, by every worker.
        late = [i for i in mine if i.requested_at > rotated_at + PICKUP_SECONDS]
        assert late and {i.kid for i in late} == {promoted}, provider.url
        first_new = min(i.answered_at for i in mine if i.kid == promoted)
        print(  # the figures the report quotes (pytest -s)
            f"{provider.url}: first token with the new key {first_new - rotated_at:.2f} s after the "
            f"manifest changed; {len(mine)} sign-ins"
        )
    print(f"pruned key gone from both JWKS {unpublished_in:.2f} s after `idp keys prune` returned")


def test_revoked_key_is_unpublished_and_its_tokens_refused_by_every_process(
    district: District, start_providers: ProviderPool, tmp_path: Path
) -> None:
    keys_dir = tmp_path / "keys"
    a, b = start_two(start_providers, district, keys_dir)
    upcoming = kid_in(keys_dir, "RS256", "next")
    auth = AuthRequest(district.client_id, redirect_uri=district.redirect_uri)
    with requests.Session() as portal:
        response = redeem(portal, a.url, auth, obtain_code(a.url, auth, district), district)
        with response:
            assert response.status_code == 200, describe(response)
            tokens = response.json()
    compromised = kid_of(tokens["access_token"])
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}

    def userinfo_status(provider: Provider) -> int:
        reply = requests.get(f"{provider.url}/userinfo", headers=bearer, timeout=HTTP_TIMEOUT)
        with reply:
            return reply.status_code

    def introspected_active(provider: Provider) -> bool:
        reply = requests.post(
            f"{provider.url}/introspect",
            data={"token": tokens["access_token"]},
            auth=(district.client_id, district.client_secret),
            timeout=HTTP_TIMEOUT,
        )
        with reply:
            assert reply.status_code == 200, describe(reply)
            return bool(reply.json()["active"])

    assert [userinfo_status(a), userinfo_status(b)] == [200, 200]
    assert [introspected_active(a), introspected_active(b)] == [True, True]

    output = run_idp(operator(district, keys_dir), "keys", "revoke", compromised)

    assert f"RS256: {compromised} revoked (was active)" in output
    # Each check reaches one worker of a process, and each worker picks the change up on its own
    # within the check interval: every answer is asked for until all agree.
    took = wait_until(
        lambda: (
            userinfo_status(a) == userinfo_status(b) == 401
            and [introspected_active(a), introspected_active(b)] == [False, False]
            and compromised not in published(a) | published(b)
        ),
        PICKUP_SECONDS,
        "revoked key's token refused, inactive and unpublished at both processes",
    )
    print(f"revocation in force on both processes {took:.2f} s after `idp keys revoke` returned")
    # Signing goes on at once with the next key, whose tokens every process accepts.
    fresh = AuthRequest(district.client_id, redirect_uri=district.redirect_uri)
    with requests.Session() as portal:
        response = redeem(portal, b.url, fresh, obtain_code(b.url, fresh, district), district)
        with response:
            new_tokens = response.json()
        assert kid_of(new_tokens["access_token"]) == upcoming
        reply = portal.get(
            f"{a.url}/userinfo",
            headers={"Authorization": f"Bearer {new_tokens['access_token']}"},
            timeout=HTTP_TIMEOUT,
        )
        with reply:
            assert reply.status_code == 200, describe(reply)
