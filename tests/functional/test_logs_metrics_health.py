"""What an operator reads: one JSON log line per request (its id echoed, who made it, no secret),
the audit events in the same log, the metrics a sign-in and a code flow add, and readiness."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from idp import create_app
from idp.accounts.models import Account
from idp.clock import FrozenClock
from idp.extensions import db
from idp.web.context import services
from tests.conftest import PASSWORD, AuthRequest, postgres_url, settings_for_tests
from tests.functional import oidc
from tests.functional.logs import JsonLog, json_log
from tests.functional.tokens import sign_in_and_redeem
from tests.redis_server import free_port

REQUEST_KEYS = {"request_id", "method", "path", "status", "duration_ms", "client_id", "account_id"}
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def log() -> Iterator[JsonLog]:
    with json_log() as lines:
        yield lines


@pytest.fixture
def dana(make_account: Callable[..., Account]) -> Account:
    return make_account(username="dana.rivera", email="dana@example.org")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def only(lines: list[dict[str, object]], method: str, path: str) -> dict[str, object]:
    (line,) = [line for line in lines if line["method"] == method and line["path"] == path]
    return line


# --- logs ---------------------------------------------------------------------------------------
def test_each_request_logs_one_line_with_the_request_id_it_answers_with(client: FlaskClient, log: JsonLog):
    given = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.91:2"})
    odd = client.get("/healthz", headers={"X-Request-ID": "two words"})
    long = client.get("/healthz", headers={"X-Request-ID": "a" * 129})
    made = client.get("/healthz")

    lines = log.requests()
    assert len(lines) == 4 and all(set(line) >= REQUEST_KEYS for line in lines)
    assert [line["request_id"] for line in lines] == [
        response.headers["X-Request-ID"] for response in (given, odd, long, made)
    ]
    assert lines[0]["request_id"] == "lb-7f3a.91:2"
    assert all(GENERATED_ID.fullmatch(str(line["request_id"])) for line in lines[1:])
    assert len({line["request_id"] for line in lines}) == 4
    assert (lines[3]["method"], lines[3]["path"], lines[3]["status"]) == ("GET", "/healthz", 200)
    assert isinstance(lines[3]["duration_ms"], float)


def test_a_code_flow_logs_who_made_each_request_its_audit_events_and_no_secret(
    app: Flask, dana: Account, make_client, log: JsonLog
):
    portal = make_client()
    browser = app.test_client()
    oidc.sign_in(browser, "dana.rivera", "not the password")
    tokens = sign_in_and_redeem(browser, portal, "dana.rivera")
    userinfo = browser.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.status_code == 200

    lines = log.requests()
    authorize = only(lines, "GET", "/authorize")
    assert authorize["client_id"] == portal.client_id and authorize["status"] == 303
    signins = [line for line in lines if line["method"] == "POST" and line["path"] == "/signin"]
    assert [line["account_id"] for line in signins] == [None, dana.id]
    assert signins[1]["client_id"] == portal.client_id
    token = only(lines, "POST", "/token")
    assert (token["client_id"], token["account_id"], token["status"]) == (portal.client_id, dana.id, 200)
    assert only(lines, "GET", "/userinfo")["account_id"] == dana.id
    # A pending authorization request's id is a secret of the browser that started it.
    assert only(lines, "GET", "/authorize/continue/…")["status"] in {200, 302, 303}

    audited = {line["event"]: line for line in log.audit()}
    assert {"signin.failed", "signin.succeeded", "access_token.issued"} <= set(audited)
    assert audited["signin.succeeded"]["request_id"] == signins[1]["request_id"]
    assert audited["signin.succeeded"]["account_id"] == dana.id

    issued = [tokens[name] for name in ("access_token", "refresh_token", "id_token") if name in tokens]
    secrets = [PASSWORD, "not the password", portal.client_secret, *issued]
    cookies = [cookie.value for cookie in browser._cookies.values()]
    secrets += [value for value in cookies if len(value) >= 8]
    text = log.text()
    assert len(issued) >= 2 and not [secret for secret in secrets if secret in text]


def test_a_console_request_names_the_staff_member(staff_client, log: JsonLog):
    browser, staff = staff_client()
    assert browser.get("/admin/accounts").status_code == 200

    assert only(log.requests(), "GET", "/admin/accounts")["account_id"] == staff.id


def test_a_path_that_is_a_secret_is_logged_without_it(client: FlaskClient, log: JsonLog):
    client.get("/reset/rc_resetsecret0123456789")
    client.get("/verify/vf_verifysecret0123456789?lang=en")
    client.get("/invitations/inv_invitesecret0123/account")
    client.get("/reset/rc_resetsecret0123456789/unknown")  # no route: a 404, its path still redacted

    paths = [line["path"] for line in log.requests()]
    assert paths == ["/reset/…", "/verify/…", "/invitations/…/account", "/reset/…/unknown"]
    assert "secret" not in log.text()


# --- metrics ------------------------------------------------------------------------------------
def test_sign_ins_tokens_and_latencies_are_counted(
    app: Flask, client: FlaskClient, dana: Account, make_client
):
    portal = make_client()
    before = {
        "failure": sample("idp_signins_total", outcome="failure"),
        "success": sample("idp_signins_total", outcome="success"),
        "code": sample("idp_tokens_issued_total", grant="authorization_code"),
        "refresh": sample("idp_tokens_issued_total", grant="refresh_token"),
        "signin": sample("idp_signin_duration_seconds_count"),
        "token": sample("idp_token_duration_seconds_count"),
        "authorize": sample("idp_authorize_duration_seconds_count"),
        "userinfo": sample("idp_userinfo_duration_seconds_count"),
    }
    browser = app.test_client()
    oidc.sign_in(browser, "dana.rivera", "not the password")
    tokens = sign_in_and_redeem(browser, portal, "dana.rivera")
    browser.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    oidc.redeem(browser, AuthRequest(portal.client_id), "ac_not-a-code", portal.client_secret)

    assert sample("idp_signins_total", outcome="failure") - before["failure"] == 1
    assert sample("idp_signins_total", outcome="success") - before["success"] == 1
    # The refused code is no token issued.
    assert sample("idp_tokens_issued_total", grant="authorization_code") - before["code"] == 1
    assert sample("idp_tokens_issued_total", grant="refresh_token") == before["refresh"]
    assert sample("idp_signin_duration_seconds_count") - before["signin"] == 2
    assert sample("idp_token_duration_seconds_count") - before["token"] == 2
    assert sample("idp_authorize_duration_seconds_count") - before["authorize"] == 1
    assert sample("idp_userinfo_duration_seconds_count") - before["userinfo"] == 1
    text = client.get("/metrics").get_data(as_text=True)
    assert "# TYPE idp_signin_duration_seconds histogram" in text
    assert 'idp_signins_total{outcome="success"}' in text


def test_the_outbox_backlog_and_the_key_age_are_read_at_scrape_time(
    client: FlaskClient, clock: FrozenClock, dana: Account
):
    services().outbox().queue(to="dana@example.org", subject="Hello", body="Hi", purpose="test")
    db.session.commit()
    clock.advance(timedelta(seconds=90))

    text = client.get("/metrics").get_data(as_text=True)
    assert re.search(r"^idp_outbox_depth 1\.0$", text, re.MULTILINE), text
    assert re.search(r"^idp_outbox_oldest_seconds 90\.0$", text, re.MULTILINE)
    ages = re.findall(r'^idp_signing_key_age_seconds\{alg="RS256",kid="[^"]+"\} ([0-9.e+]+)$', text, re.M)
    assert len(ages) == 1 and float(ages[0]) >= 90


# --- readiness ----------------------------------------------------------------------------------
@pytest.fixture
def own_app(database_url: str, tmp_path: Path, clock: FrozenClock) -> Iterator[Flask]:
    """An app with a key folder of its own, which a test may break."""
    app = create_app(settings_for_tests(database_url, tmp_path / "keys"), clock=clock)
    try:
        yield app
    finally:
        with app.app_context():
            db.engine.dispose()


def test_ready_while_the_database_the_keys_and_redis_answer(client: FlaskClient):
    ready = client.get("/readyz")

    assert ready.status_code == 200
    assert ready.json == {"status": "ok", "database": "ok", "keys": "ok", "redis": "ok"}
    assert client.get("/healthz").status_code == 200


def test_unusable_keys_make_the_process_unavailable(own_app: Flask, tmp_path: Path):
    with own_app.app_context():
        assert own_app.test_client().get("/readyz").status_code == 200
        (tmp_path / "keys" / "manifest.json").write_text("{ not json")
        ready = own_app.test_client().get("/readyz")

    assert ready.status_code == 503
    assert ready.json == {"status": "unavailable", "database": "ok", "keys": "unavailable", "redis": "ok"}


def test_without_the_database_the_process_is_unavailable_and_still_alive(tmp_path: Path, clock: FrozenClock):
    nowhere = postgres_url("idp_nowhere").replace(":5432/", f":{free_port()}/")
    app = create_app(settings_for_tests(nowhere, tmp_path / "keys"), clock=clock)
    try:
        with app.app_context():
            ready = app.test_client().get("/readyz")
            alive = app.test_client().get("/healthz")
    finally:
        with app.app_context():
            db.engine.dispose()

    assert ready.status_code == 503
    assert ready.json == {"status": "unavailable", "database": "unavailable", "keys": "ok", "redis": "ok"}
    assert alive.status_code == 200
