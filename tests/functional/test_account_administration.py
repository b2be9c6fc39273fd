"""Accounts that end stay ended: expiry and disabling take effect on every credential at once,
the worker signs expired accounts out everywhere, and staff disable, enable, expire and give
temporary passwords from the command line."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.accounts.models import Account, AccountStatus, OPSession
from idp.audit import AuditEvent
from idp.extensions import db
from idp.oauth.models import RefreshTokenFamily
from tests.conftest import PASSWORD, AuthRequest, redirect_params
from tests.functional.oidc import authorize_as, redeem, sign_in
from tests.functional.tokens import (
    OFFLINE_SCOPE,
    audit_names,
    count,
    introspect,
    refresh,
    sign_in_and_redeem,
    unique_username,
)
from tests.receiver import Receiver

EXPIRED = "This account has expired."
DISABLED = "This account is disabled."
TEMPORARY_EXPIRED = "This temporary password has expired. Ask your school for a new one."


@pytest.fixture
def portal(make_client, receiver: Receiver):
    return make_client(scope=OFFLINE_SCOPE, backchannel_logout_uri=receiver.url)


@pytest.fixture
def username(make_account) -> str:
    name = unique_username()
    make_account(username=name)
    return name


@pytest.fixture
def cli(app: Flask) -> Callable[..., Result]:
    def run(*args: str, stdin: str | None = None) -> Result:
        return app.test_cli_runner().invoke(args=list(args), input=stdin)

    return run


def account_named(username: str) -> Account:
    db.session.rollback()
    return db.session.execute(select(Account).where(Account.username == username)).scalar_one()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def prompt_none(client: FlaskClient, portal: Any) -> dict[str, str]:
    auth = AuthRequest(portal.client_id, extra={"prompt": "none"})
    response = client.get(auth.url())
    assert response.status_code == 302
    return redirect_params(response.headers["Location"])


def page_text(response: Any) -> str:
    return str(response.get_data(as_text=True))


def expire_now(cli: Callable[..., Result], username: str, clock: Any) -> None:
    at = (clock.now() + timedelta(hours=1)).isoformat()
    assert cli("accounts", "expire", username, "--at", at).exit_code == 0
    clock.advance(timedelta(hours=1))


def disable(cli: Callable[..., Result], username: str, clock: Any) -> None:
    result = cli("accounts", "disable", username, "--reason", "left the district")
    assert result.exit_code == 0, result.stderr


# --- every credential, at once ------------------------------------------------------------------
@pytest.mark.parametrize("end", [expire_now, disable], ids=["expired", "disabled"])
def test_an_ended_account_keeps_nothing_that_was_opened_before(client, portal, username, cli, clock, end):
    tokens = sign_in_and_redeem(client, portal, username)
    # A code given before the end, redeemed after it.
    waiting = AuthRequest(portal.client_id, scope=OFFLINE_SCOPE)
    code = authorize_as(client, waiting, username)["code"]
    assert "code" in prompt_none(client, portal)

    end(cli, username, clock)

    assert prompt_none(client, portal)["error"] == "login_required"
    account_page = client.get("/account")
    assert account_page.status_code in {302, 303} and "/signin" in account_page.headers["Location"]
    assert client.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 401
    refreshed = refresh(client, portal.client_id, portal.client_secret, tokens["refresh_token"])
    assert (refreshed.status_code, refreshed.get_json()["error"]) == (400, "invalid_grant")
    for token in (tokens["access_token"], tokens["refresh_token"]):
        answer = introspect(client, portal.client_id, portal.client_secret, token)
        assert answer.get_json()["active"] is False
    redeemed = redeem(client, waiting, code, portal.client_secret)
    assert (redeemed.status_code, redeemed.get_json()["error"]) == (400, "invalid_grant")


def test_expiry_in_the_future_changes_nothing_yet(client, portal, username, cli, clock):
    tokens = sign_in_and_redeem(client, portal, username)
    at = (clock.now() + timedelta(days=30)).isoformat()
    assert cli("accounts", "expire", username, "--at", at).exit_code == 0

    assert "code" in prompt_none(client, portal)
    assert refresh(client, portal.client_id, portal.client_secret, tokens["refresh_token"]).status_code == 200


@pytest.mark.parametrize(("end", "message"), [(expire_now, EXPIRED), (disable, DISABLED)])
def test_sign_in_says_why_only_after_the_right_password(client, username, cli, clock, end, message):
    end(cli, username, clock)

    wrong = page_text(sign_in(client, username, "not the password at all"))
    right = page_text(sign_in(client, username))

    assert message not in wrong and "Invalid username or password." in wrong
    assert message in right
    assert count(OPSession) == 0


def test_disabling_ends_sessions_revokes_grants_and_tells_portals(client, portal, username, cli, receiver):
    tokens = sign_in_and_redeem(client, portal, username)

    result = cli("accounts", "disable", username, "--reason", "  guardianship ended by court order ")

    assert result.exit_code == 0, result.stderr
    assert f"disabled {username}; 1 session(s) ended" in result.stderr
    assert receiver.wait_for(1)
    account = account_named(username)
    assert (account.status, account.disabled_reason) == (
        AccountStatus.DISABLED,
        "guardianship ended by court order",
    )
    assert count(OPSession) == 0
    assert count(RefreshTokenFamily, RefreshTokenFamily.revoked_at.is_(None)) == 0
    event = db.session.execute(select(AuditEvent).where(AuditEvent.name == "account.disabled")).scalar_one()
    assert event.details["reason"] == "guardianship ended by court order"
    assert event.details["actor"].startswith("cli:")
    assert tokens["refresh_token"] not in str(event.details)


def test_enable_restores_the_status_it_had(client, make_account, cli):
    confirmed = make_account()
    pending = make_account(status=AccountStatus.PENDING)
    for account in (confirmed, pending):
        assert cli("accounts", "disable", account.username, "--reason", "checking").exit_code == 0

    assert "enabled" in cli("accounts", "enable", confirmed.username).stderr
    assert "enabled" in cli("accounts", "enable", pending.username).stderr
    assert "was not disabled" in cli("accounts", "enable", pending.username).stderr

    assert account_named(confirmed.username).status is AccountStatus.CONFIRMED
    assert account_named(pending.username).status is AccountStatus.PENDING
    assert account_named(confirmed.username).disabled_reason is None
    assert sign_in(client, confirmed.username).status_code == 303
    assert "account.enabled" in audit_names()


def test_expire_never_lifts_an_expiry(client, username, cli, clock):
    expire_now(cli, username, clock)
    assert EXPIRED in page_text(sign_in(client, username))

    result = cli("accounts", "expire", username, "--at", "never")

    assert result.exit_code == 0 and "expires never" in result.stderr
    assert sign_in(client, username).status_code == 303


def test_expire_takes_a_date_or_a_time_with_its_offset(username, cli):
    assert cli("accounts", "expire", username, "--at", "2027-06-30").exit_code == 0
    assert account_named(username).expires_at == datetime(2027, 6, 30, tzinfo=UTC)
    assert cli("accounts", "expire", username, "--at", "2027-06-30T17:00-07:00").exit_code == 0
    assert account_named(username).expires_at == datetime(2027, 7, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "args",
    [
        ("accounts", "expire", "{user}", "--at", "next tuesday"),
        ("accounts", "expire", "{user}", "--at", "0001-01-01"),
        ("accounts", "expire", "{user}", "--at", "2027-02-30"),
        ("accounts", "expire", "{user}", "--at", "2027-06-30\x00"),
        ("accounts", "expire", "{user}"),
        ("accounts", "disable", "{user}"),
        ("accounts", "disable", "{user}", "--reason", "   "),
        ("accounts", "disable", "{user}", "--reason", "x" * 201),
        ("accounts", "disable", "{user}", "--reason", "line\nbreak"),
        ("accounts", "disable", "nobody-here", "--reason", "x"),
        ("accounts", "disable", "nul\x00name", "--reason", "x"),
        ("accounts", "enable", "nobody-here"),
        ("accounts", "expire", "nobody-here", "--at", "never"),
        ("accounts", "set-temporary-password", "nobody-here"),
    ],
)
def test_bad_input_is_refused_clearly_and_changes_nothing(client, portal, username, cli, args):
    sign_in_and_redeem(client, portal, username)
    before = audit_names()

    result = cli(*(arg.format(user=username) for arg in args))

    assert result.exit_code in {1, 2}  # click's usage error, or the command's refusal
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stderr.startswith(("Error", "Usage")) and "Traceback" not in result.stderr
    account = account_named(username)
    assert (account.status, account.expires_at) == (AccountStatus.CONFIRMED, None)
    assert count(OPSession) == 1
    assert audit_names() == before


# --- the worker ---------------------------------------------------------------------------------
def test_the_worker_signs_expired_accounts_out_and_tells_their_portals(
    app, client, portal, make_account, username, cli, receiver, clock
):
    sign_in_and_redeem(client, portal, username)
    staying = make_account()
    with app.app_context():  # a fresh ``g``: another browser's CSRF token
        assert sign_in(app.test_client(), staying.username).status_code == 303
    assert (
        cli(
            "accounts", "expire", username, "--at", (clock.now() + timedelta(minutes=5)).isoformat()
        ).exit_code
        == 0
    )
    clock.advance(timedelta(minutes=6))
    assert count(OPSession) == 2  # refused at use, not yet swept

    result = cli("worker", "--once")

    assert result.exit_code == 0, result.stderr
    assert "ended 1 session(s) of expired accounts" in result.stderr
    (received,) = receiver.wait_for(1)
    assert received.form["logout_token"]
    assert count(OPSession) == 1
    assert "op_session.account_expired" in audit_names()


# --- temporary passwords ----------------------------------------------------------------------
def test_a_generated_temporary_password_is_a_passphrase_that_passes_the_policy(cli, username, client):
    result = cli("accounts", "set-temporary-password", username)

    assert result.exit_code == 0, result.stderr
    password = result.stdout.strip()
    words = password.split("-")
    assert len(words) == 6 and all(word.isalpha() for word in words[:-1]) and words[-1].isdigit()
    assert len(password) >= 15
    assert password not in result.stderr
    account = account_named(username)
    assert account.must_change_password and account.temporary_password_expires_at is not None
    response = sign_in(client, username, password)
    assert response.status_code == 303 and "/signin/change-password" in response.headers["Location"]


def test_a_generated_passphrase_grows_to_a_schools_longer_minimum(cli, username):
    assert cli("policy", "set", "--min-length", "64").exit_code == 0

    result = cli("accounts", "set-temporary-password", username)

    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.strip()) >= 64


@pytest.mark.parametrize(
    ("chosen", "violation"),
    [
        ("short", "must be at least 15 characters long"),
        ("password1234567890", "too common"),
        (PASSWORD, "previously used"),
    ],
)
def test_a_chosen_temporary_password_must_pass_the_policy(cli, username, chosen, violation):
    before = account_named(username).password_hash

    result = cli("accounts", "set-temporary-password", username, "--password-stdin", stdin=chosen + "\n")

    assert result.exit_code == 1
    assert violation in result.stderr
    account = account_named(username)
    assert (account.password_hash, account.must_change_password) == (before, False)


def test_a_chosen_temporary_password_that_passes_is_not_printed(cli, username):
    chosen = "a long enough passphrase of mine"

    result = cli("accounts", "set-temporary-password", username, "--password-stdin", stdin=chosen + "\n")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert chosen not in result.stderr


def test_a_temporary_password_expires_and_then_only_says_so(client, cli, username, clock, settings):
    password = cli("accounts", "set-temporary-password", username).stdout.strip()
    clock.advance(timedelta(seconds=settings.temporary_password_seconds))
    before = audit_names()

    response = sign_in(client, username, password)

    assert response.status_code == 200
    assert TEMPORARY_EXPIRED in page_text(response)
    assert count(OPSession) == 0
    assert "change_ticket" not in response.headers.get("Set-Cookie", "")
    assert audit_names()[len(before) :] == ["signin.refused"]
    # A wrong password says nothing about the temporary password.
    assert TEMPORARY_EXPIRED not in page_text(sign_in(client, username, "a wrong password entirely"))


def test_a_temporary_password_changed_in_time_stops_expiring(client, cli, username, clock, settings):
    from tests.functional.test_forced_change import change

    password = cli("accounts", "set-temporary-password", username).stdout.strip()
    response = sign_in(client, username, password)
    assert change(client, password, "a brand new passphrase here").status_code == 303
    clock.advance(timedelta(seconds=settings.temporary_password_seconds + 1))

    assert account_named(username).temporary_password_expires_at is None
    assert sign_in(client, username, "a brand new passphrase here").status_code == 303
    assert response.status_code == 303


def test_set_temporary_password_signs_out_everywhere(client, portal, cli, username, receiver):
    tokens = sign_in_and_redeem(client, portal, username)

    result = cli("accounts", "set-temporary-password", username)

    assert "1 session(s) ended" in result.stderr
    assert receiver.wait_for(1)
    assert refresh(client, portal.client_id, portal.client_secret, tokens["refresh_token"]).status_code == 400
    event = db.session.execute(
        select(AuditEvent).where(AuditEvent.name == "password.set_temporary")
    ).scalar_one()
    assert event.details["generated"] is True
    assert result.stdout.strip() not in str(event.details)
