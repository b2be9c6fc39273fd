"""``idp keys rotate|retire|revoke|prune`` on a key folder of the test's own, seen through HTTP."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jws
from sqlalchemy import select, text

from idp.audit import AuditEvent
from idp.cli import main
from idp.clock import FrozenClock
from idp.config import Settings
from idp.extensions import db
from idp.keys.store import MANIFEST, read_manifest
from idp.web.context import services
from tests.conftest import AuthRequest, settings_for_tests
from tests.functional.oidc import authorize_as, basic_auth, redeem

JWKS_MAX_AGE = 60
# 2 × IDP_JWKS_MAX_AGE + IDP_KEYS_CHECK_SECONDS, and the longest token life + max-age + check.
LEAD = timedelta(seconds=2 * JWKS_MAX_AGE + 2)
GRACE = timedelta(seconds=600 + JWKS_MAX_AGE + 2)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Every test here changes keys: it gets a key folder of its own instead of the session's."""
    return settings_for_tests(database_url, tmp_path / "keys", jwks_max_age=JWKS_MAX_AGE)


@pytest.fixture
def idp(app: Flask):
    runner = app.test_cli_runner()

    def run(*args: str) -> Result:
        result = runner.invoke(args=list(args))
        db.session.rollback()
        db.session.expire_all()
        return result

    return run


def kid(state: str, alg: str = "RS256") -> str:
    (found,) = [
        r.kid for r in read_manifest(services().settings.keys_dir) if r.alg == alg and r.state == state
    ]
    return found


def kid_of(token: str) -> str:
    value: str = jws.extract_compact(token.encode()).headers()["kid"]
    return value


def published_kids(client: FlaskClient) -> set[str]:
    return {key["kid"] for key in client.get("/jwks.json").get_json()["keys"]}


def audited(name: str) -> list[dict[str, Any]]:
    rows = db.session.execute(select(AuditEvent).where(AuditEvent.name == name)).scalars()
    return [row.details for row in rows]


def assert_failed_with_one_line(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def sign_in_tokens(client: FlaskClient, make_account, make_client) -> tuple[dict[str, Any], Any]:
    """Return a fresh sign-in's token response and the portal it was issued to."""
    make_account(username="dana")
    portal = make_client()
    auth = AuthRequest(portal.client_id)
    response = redeem(client, auth, authorize_as(client, auth, "dana")["code"], portal.client_secret)
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json()), portal


def introspected(client: FlaskClient, portal: Any, token: str) -> dict[str, Any]:
    response = client.post(
        "/introspect", data={"token": token}, headers=basic_auth(portal.client_id, portal.client_secret)
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return dict(response.get_json())


# --- rotate --------------------------------------------------------------------------------
def test_rotate_before_the_lead_time_fails_in_one_line_naming_force(idp, app):
    before = (services().settings.keys_dir / MANIFEST).read_bytes()

    result = idp("keys", "rotate")

    assert_failed_with_one_line(result, kid("next"), "--force", "2m 2s")
    assert (services().settings.keys_dir / MANIFEST).read_bytes() == before
    assert audited("key.rotated") == []


def test_rotate_after_the_lead_time_signs_with_the_next_key_and_audits_it(idp, client, clock: FrozenClock):
    active, upcoming = kid("active"), kid("next")
    clock.advance(LEAD)

    result = idp("keys", "rotate", "--alg", "rs256")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"RS256: {upcoming} signs now; {active} retired; ")
    assert kid_of(services().keys.sign({"sub": "x"})) == upcoming
    assert {active, upcoming, kid("next")} <= published_kids(client)
    (details,) = audited("key.rotated")
    assert details == {"kid": upcoming, "alg": "RS256", "retired": active, "next": kid("next")}


def test_a_key_change_the_audit_log_cannot_record_is_not_made(idp, settings: Settings):
    manifest = (settings.keys_dir / MANIFEST).read_bytes()
    files = sorted(settings.keys_dir.iterdir())
    # The audit table out of reach: every insert into it fails, as with a database that is down.
    db.session.execute(text("ALTER TABLE audit_event RENAME TO audit_event_away"))
    db.session.commit()
    try:
        result = idp("keys", "rotate", "--alg", "RS256", "--force")
    finally:
        db.session.rollback()
        db.session.execute(text("ALTER TABLE audit_event_away RENAME TO audit_event"))
        db.session.commit()

    assert_failed_with_one_line(result, "audit log", "not changed")
    assert (settings.keys_dir / MANIFEST).read_bytes() == manifest
    assert sorted(settings.keys_dir.iterdir()) == files  # the new next key's files are gone again
    assert audited("key.rotated") == []


def test_rotate_force_promotes_a_young_next_key(idp, clock):
    upcoming = kid("next")

    result = idp("keys", "rotate", "--alg", "RS256", "--force")

    assert result.exit_code == 0, result.output
    assert kid("active") == upcoming
    assert audited("key.rotated")[0]["forced_by"] == "--force"


def test_rotate_if_older_than_leaves_a_young_key_alone_and_exits_zero(idp, clock):
    active = kid("active")
    clock.advance(timedelta(days=30))

    result = idp("keys", "rotate", "--if-older-than", "90d")
    clock.advance(timedelta(days=61))
    later = idp("keys", "rotate", "--if-older-than", "90d")

    assert result.exit_code == 0, result.output
    assert "RS256: the active key" in result.stdout and "30d old, younger than 90d" in result.stdout
    assert later.exit_code == 0, later.output
    assert kid("retired") == active


@pytest.mark.parametrize(("option", "value"), [("--if-older-than", "90 days"), ("--alg", "HS256")])
def test_rotate_refuses_malformed_options_naming_them(idp, option, value):
    result = idp("keys", "rotate", option, value)

    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and option in errors[0], result.stderr


# --- retire, revoke ------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["retire", "revoke"])
def test_unknown_kid_fails_in_one_line(idp, command):
    assert_failed_with_one_line(idp("keys", command, "rs256-20260101-nope"), "rs256-20260101-nope")


def test_retire_of_the_active_key_fails_in_one_line_pointing_at_rotate(idp):
    assert_failed_with_one_line(idp("keys", "retire", kid("active")), "idp keys rotate --alg RS256")


def test_retire_of_the_next_key_publishes_another_and_audits_key_retired(idp, client):
    upcoming = kid("next")

    result = idp("keys", "retire", upcoming)

    assert result.exit_code == 0, result.output
    assert kid("retired") == upcoming and kid("next") != upcoming
    assert {upcoming, kid("next")} <= published_kids(client)
    assert audited("key.retired") == [{"kid": upcoming, "alg": "RS256", "previous_state": "next"}]


def test_tokens_of_a_revoked_key_are_refused_at_userinfo_and_inactive_at_introspection(
    idp, client, make_account, make_client
):
    tokens, portal = sign_in_tokens(client, make_account, make_client)
    compromised = kid_of(tokens["access_token"])
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/userinfo", headers=bearer).status_code == 200
    assert introspected(client, portal, tokens["access_token"])["active"] is True

    result = idp("keys", "revoke", compromised)

    assert result.exit_code == 0, result.output
    refused = client.get("/userinfo", headers=bearer)
    assert refused.status_code == 401
    assert refused.get_json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    assert introspected(client, portal, tokens["access_token"]) == {"active": False}
    assert compromised not in published_kids(client)
    assert audited("key.revoked") == [{"kid": compromised, "alg": "RS256", "previous_state": "active"}]
    # Signing goes on with the promoted next key, and its tokens are accepted.
    fresh = services().keys.sign({"sub": "x"})
    assert kid_of(fresh) == kid("active") != compromised


# --- prune, list ---------------------------------------------------------------------------
def test_prune_after_the_grace_time_removes_the_retired_key_from_jwks(idp, client, clock):
    clock.advance(LEAD)
    idp("keys", "rotate", "--alg", "RS256")
    retired = kid("retired")
    clock.advance(GRACE - timedelta(seconds=1))

    early = idp("keys", "prune")
    assert early.exit_code == 0, early.output
    assert f"{retired} (retired) stays listed until" in early.stdout
    assert retired in published_kids(client)
    clock.advance(timedelta(seconds=1))
    on_time = idp("keys", "prune")

    assert on_time.exit_code == 0, on_time.output
    assert on_time.stdout.strip() == f"RS256: {retired} pruned (retired); its file is deleted"
    assert retired not in published_kids(client)
    assert audited("key.pruned") == [{"kid": retired, "alg": "RS256", "state": "retired"}]


def test_prune_with_nothing_to_do_says_so(idp):
    result = idp("keys", "prune")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "nothing to change"


def test_keys_list_tells_when_each_key_changes_state(idp, clock):
    upcoming = kid("next")

    result = idp("keys", "list")

    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert f"can sign from {(clock.now() + LEAD).isoformat()}" in lines[upcoming]
    assert f"signing since {clock.now().isoformat()}" in lines[kid("active")]


# --- JWKS ----------------------------------------------------------------------------------
def test_jwks_is_cacheable_for_less_than_the_lead_time_and_revalidates_by_etag(idp, client, clock):
    first = client.get("/jwks.json")
    assert first.headers["Cache-Control"] == f"public, max-age={JWKS_MAX_AGE}"
    assert timedelta(seconds=JWKS_MAX_AGE) < LEAD
    etag = first.headers["ETag"]

    assert client.get("/jwks.json", headers={"If-None-Match": etag}).status_code == 304
    clock.advance(LEAD)
    idp("keys", "rotate")
    changed = client.get("/jwks.json", headers={"If-None-Match": etag})

    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert json.loads(changed.data) == services().keys.public_jwks()


# --- the installed entry point ------------------------------------------------------------
def test_corrupt_manifest_stops_a_key_command_in_one_line(monkeypatch, tmp_path):
    for name in [n for n in os.environ if n.startswith(("IDP_", "FLASK_"))]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / MANIFEST).write_text('{"version": 1, "keys": [')
    env = {"IDP_DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "IDP_SECRET_KEY": "s" * 40}

    result = CliRunner().invoke(main, ["keys", "rotate"], env=env)

    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "restore it from backup" in lines[0]
    # A relative IDP_KEYS_DIR (the default, keys/) is the working directory's.
    assert str(tmp_path / "keys" / MANIFEST) in lines[0]
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == [MANIFEST]
