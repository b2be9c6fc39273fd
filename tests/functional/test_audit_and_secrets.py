"""Audit events of a sign-in say where it came from (portal, address, browser), and no secret a
family or a portal used (password, Access Password, code, token, link, cookie) ever reaches an
audit event or a log line, whatever the log level."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.accounts.models import Account
from idp.audit import AuditEvent
from idp.config import Settings
from idp.extensions import db
from idp.students.models import Student
from idp.web.context import services
from tests.conftest import PASSWORD, AuthRequest, csrf_token, redirect_params, settings_for_tests
from tests.functional import oidc
from tests.functional.logs import JsonLog, json_log
from tests.functional.tokens import OFFLINE_SCOPE, basic_auth, introspect, refresh, revoke
from tests.smtp import Inbox, link_in

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) SchoolPortalTest/1.0"
NEW_PASSWORD = "lantern-orchard-velvet-93"
RESET_PASSWORD = "a brand new passphrase for dana"


@pytest.fixture
def settings(database_url: str, keys_dir: Path, mailbox: tuple[Inbox, int]) -> Settings:
    return settings_for_tests(database_url, keys_dir, smtp_url=f"smtp://127.0.0.1:{mailbox[1]}")


@pytest.fixture
def rendered() -> Iterator[JsonLog]:
    """The log as production writes it: JSON lines."""
    with json_log() as lines:
        yield lines


def events(name: str) -> list[AuditEvent]:
    db.session.rollback()
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.name == name)).scalars())


def post_form(client: FlaskClient, page: str, path: str, **data: str) -> Any:
    with client.application.app_context():  # a ``g`` of its own: this browser's CSRF token
        token = csrf_token(client.get(page, headers={"User-Agent": BROWSER}).get_data(as_text=True))
        return client.post(path, data={"csrf_token": token, **data}, headers={"User-Agent": BROWSER})


def sign_in_for(client: FlaskClient, auth: AuthRequest, password: str) -> Any:
    start = client.get(auth.url(), headers={"User-Agent": BROWSER})
    request_id = redirect_params(start.headers["Location"])["request"]
    return post_form(
        client,
        f"/signin?request={request_id}",
        "/signin",
        username="dana.rivera",
        password=password,
        request_id=request_id,
    )


# --- where a sign-in came from -------------------------------------------------------------------
def test_sign_in_events_name_the_portal_the_address_and_the_browser(app: Flask, make_account, make_client):
    make_account(username="dana.rivera")
    portal = make_client()
    auth = AuthRequest(portal.client_id)
    client = app.test_client()

    sign_in_for(client, auth, "not the password")
    assert sign_in_for(client, auth, PASSWORD).status_code == 303
    post_form(app.test_client(), "/signin", "/signin", username="dana.rivera", password=PASSWORD)

    (failed,) = events("signin.failed")
    first, without_portal = events("signin.succeeded")
    for event in (failed, first):
        assert (event.client_id, event.ip_address, event.details["user_agent"]) == (
            portal.client_id,
            "127.0.0.1",
            BROWSER,
        )
    assert (without_portal.client_id, without_portal.details["user_agent"]) == (None, BROWSER)


def test_a_locked_sign_in_and_a_lock_name_the_portal_too(app: Flask, make_account, make_client):
    make_account(username="dana.rivera")
    portal = make_client()
    client = app.test_client()
    for _ in range(services().settings.lockout_threshold + 1):
        sign_in_for(client, AuthRequest(portal.client_id), "not the password")

    for name in ("account.locked", "signin.refused"):
        (event, *_) = events(name)
        assert (event.client_id, event.details["user_agent"]) == (portal.client_id, BROWSER), name


def test_a_long_or_odd_user_agent_is_kept_bounded_and_printable(app: Flask, make_account):
    make_account(username="dana.rivera")
    client = app.test_client()
    with app.app_context():
        token = csrf_token(client.get("/signin").get_data(as_text=True))
        client.post(
            "/signin",
            data={"csrf_token": token, "username": "dana.rivera", "password": "wrong"},
            headers={"User-Agent": "x" * 5000 + "\x01\x7f"},
        )

    (failed,) = events("signin.failed")
    assert len(failed.details["user_agent"]) == 256 and failed.details["user_agent"].isprintable()


# --- no secret anywhere ---------------------------------------------------------------------------
def test_no_secret_of_a_whole_run_reaches_an_audit_event_or_a_log_line(
    app: Flask,
    make_account: Callable[..., Account],
    make_student: Callable[..., Student],
    make_client,
    mailbox: tuple[Inbox, int],
    caplog: pytest.LogCaptureFixture,
    rendered: JsonLog,
):
    caplog.set_level(logging.DEBUG)  # every logger at its most talkative
    inbox = mailbox[0]
    secrets: list[str] = [PASSWORD, NEW_PASSWORD, RESET_PASSWORD, "a wrong guess at it"]
    zoe = make_student(access_id="ZR-1", access_password="orchid-42-secret")
    secrets.append("orchid-42-secret")
    make_account(username="dana.rivera", email="dana@example.org")
    portal = make_client(scope=OFFLINE_SCOPE)
    secrets.append(portal.client_secret)
    browser = app.test_client()

    # Sign-in through a portal, a wrong password first; the code, the tokens, their uses.
    auth = AuthRequest(portal.client_id, scope=OFFLINE_SCOPE)
    sign_in_for(browser, auth, "a wrong guess at it")
    signed = sign_in_for(browser, auth, PASSWORD)
    cookies = [cookie.split(";", 1)[0].split("=", 1)[1] for cookie in signed.headers.getlist("Set-Cookie")]
    secrets += [value for value in cookies if len(value) >= 8]
    consented = browser.get(signed.headers["Location"])
    code = redirect_params(consented.headers["Location"])["code"]
    tokens = oidc.redeem(browser, auth, code, portal.client_secret).get_json()
    secrets += [code, tokens["access_token"], tokens["refresh_token"], tokens["id_token"]]
    assert (
        browser.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code
        == 200
    )
    refreshed = refresh(browser, portal.client_id, portal.client_secret, tokens["refresh_token"]).get_json()
    secrets += [refreshed["access_token"], refreshed["refresh_token"]]
    introspect(browser, portal.client_id, portal.client_secret, refreshed["access_token"])
    revoke(browser, portal.client_id, portal.client_secret, refreshed["refresh_token"])
    browser.post(
        "/token",
        data={"grant_type": "authorization_code", "code": code},
        headers=basic_auth(portal.client_id, "cs_wrong"),
    )

    # Linking a student by Access ID, changing the password, a reset by mail, a temporary password.
    post_form(
        browser,
        "/account/students",
        "/account/students",
        name="Zoe",
        access_id="ZR-1",
        access_password="orchid-42-secret",
        relationship="Mother",
    )
    post_form(
        browser,
        "/account?edit=password",
        "/account/password",
        current_password=PASSWORD,
        new_password=NEW_PASSWORD,
        confirm_password=NEW_PASSWORD,
        sign_out_others="y",
    )
    post_form(
        app.test_client(),
        "/signin/trouble?tab=password",
        "/signin/trouble/password",
        username="dana.rivera",
        email="dana@example.org",
    )
    assert app.test_cli_runner().invoke(args=["worker", "--once"]).exit_code == 0
    (message,) = [sent for sent in inbox.to("dana@example.org") if sent["Subject"] == "Reset your password"]
    link = link_in(message, "http://localhost/reset/")
    secrets.append(link.rsplit("/", 1)[1])
    reset_browser = app.test_client()
    post_form(
        reset_browser,
        link.removeprefix("http://localhost"),
        link.removeprefix("http://localhost"),
        username="dana.rivera",
        new_password=RESET_PASSWORD,
        confirm_password=RESET_PASSWORD,
    )
    temporary = app.test_cli_runner().invoke(args=["accounts", "set-temporary-password", "dana.rivera"])
    secrets.append(temporary.stdout.strip())
    assert zoe.id  # the student's row was used

    db.session.rollback()
    rows = list(db.session.execute(select(AuditEvent)).scalars())
    recorded = [
        repr((event.name, event.account_id, event.client_id, event.ip_address, event.details))
        for event in rows
    ]
    # Every line the provider logged; the test's own SMTP server (aiosmtpd, "mail.log") logs the
    # mail it receives, reset link and all, as a mailbox would hold it.
    ours = [record for record in caplog.records if not record.name.startswith("mail.log")]
    logged = [record.getMessage() for record in ours] + [repr(record.args) for record in ours]
    # The run went through every step (each left its event).
    assert {
        "signin.failed",
        "signin.succeeded",
        "access_token.issued",
        "guardian_link.created",
        "password.changed",
        "password.reset",
        "password.set_temporary",
        "refresh_token_family.revoked",
    } <= {event.name for event in rows}
    # The lines as written, each one JSON; every request's with its id.
    lines = [str(line) for line in rendered.lines()] + [rendered.text()]
    assert rendered.requests() and all(line["request_id"] for line in rendered.requests())
    for secret in secrets:
        assert len(secret) >= 8, secret
        leaks = [line for line in recorded + logged + lines if secret in line]
        assert leaks == [], f"{secret[:12]}… appears in {leaks[:2]}"
