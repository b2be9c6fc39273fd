"""Change Your Password at sign-in: temporary and expired passwords, and expired accounts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.accounts.models import Account, OPSession
from idp.clock import FrozenClock
from idp.extensions import db
from idp.mail.models import OutboundEmail
from idp.web.context import services
from tests.conftest import PASSWORD, AuthRequest, csrf_token, redirect_params
from tests.functional import oidc, tokens

NEW_PASSWORD = "a password of my own choosing"
CHANGE_PAGE = "/signin/change-password"


@dataclass(frozen=True)
class Parent:
    id: str
    username: str


@pytest.fixture
def make_parent(make_account):
    def make(**fields: Any) -> Parent:
        account = make_account(**fields)
        parent = Parent(account.id, account.username)
        # No transaction left open in the test's session: on SQLite it would hold the write lock.
        db.session.rollback()
        return parent

    return make


def sign_in(client: FlaskClient, username: str, password: str = PASSWORD, request_id: str = "") -> Any:
    with client.application.app_context():
        return oidc.sign_in(client, username, password, request_id)


def change(
    client: FlaskClient, current: str = PASSWORD, new: str = NEW_PASSWORD, confirm: str | None = None
) -> Any:
    with client.application.app_context():
        page = client.get(CHANGE_PAGE)
        assert page.status_code == 200, page.status_code
        return client.post(
            CHANGE_PAGE,
            data={
                "csrf_token": csrf_token(page.get_data(as_text=True)),
                "current_password": current,
                "new_password": new,
                "confirm_password": new if confirm is None else confirm,
            },
        )


def count(model: Any, *where: Any) -> int:
    found = tokens.count(model, *where)
    db.session.rollback()
    return found


def account_row(account_id: str) -> dict[str, Any]:
    row = db.session.get(Account, account_id)
    assert row is not None
    values = {"login_count": row.login_count, "must_change": row.must_change_password}
    db.session.rollback()
    return values


def test_a_temporary_password_leads_to_change_your_password_without_a_session(
    client: FlaskClient, make_parent
):
    parent = make_parent(temporary=True)

    response = sign_in(client, parent.username)

    assert response.status_code == 303
    assert response.headers["Location"].endswith(CHANGE_PAGE)
    assert count(OPSession) == 0
    assert account_row(parent.id)["login_count"] == 0  # not signed in yet
    assert client.get("/account").status_code == 303  # no session
    page = client.get(CHANGE_PAGE).get_data(as_text=True)
    assert "Change Your Password" in page and "Your password is temporary." in page


def test_changing_it_signs_in_and_continues_the_authorization(client: FlaskClient, make_parent, make_client):
    parent = make_parent(temporary=True)
    portal = make_client()
    auth = AuthRequest(portal.client_id)
    request_id = redirect_params(client.get(auth.url()).headers["Location"])["request"]
    assert sign_in(client, parent.username, request_id=request_id).headers["Location"].endswith(CHANGE_PAGE)

    response = change(client)

    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/authorize/continue/{request_id}")
    final = client.get(response.headers["Location"])
    assert final.status_code == 302 and "code" in redirect_params(final.headers["Location"])
    assert account_row(parent.id) == {"login_count": 1, "must_change": False}
    again = FlaskClient(client.application, use_cookies=True)
    assert sign_in(again, parent.username, NEW_PASSWORD).headers["Location"].endswith("/account")
    kinds = db.session.execute(select(OutboundEmail.purpose)).scalars().all()
    db.session.rollback()
    assert "password_changed" in kinds


@pytest.mark.parametrize(
    ("current", "new", "confirm", "message"),
    [
        ("wrong password", NEW_PASSWORD, None, "Current password is not correct."),
        (PASSWORD, "too short", None, "New password must be at least 15 characters long."),
        (PASSWORD, NEW_PASSWORD, "not the same at all", "match"),
        (PASSWORD, PASSWORD, None, "previously used"),
    ],
    ids=["wrong-current", "too-short", "mismatch", "same-as-temporary"],
)
def test_refused_changes_say_why_and_keep_the_ticket(
    client: FlaskClient, make_parent, current, new, confirm, message
):
    parent = make_parent(temporary=True)
    sign_in(client, parent.username)

    response = change(client, current, new, confirm)

    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert count(OPSession) == 0
    assert change(client).status_code == 303  # the ticket still works


def test_a_password_past_the_policy_maximum_age_must_change(
    client: FlaskClient, make_parent, clock: FrozenClock
):
    parent = make_parent()
    policies = services().password_policies()
    policies.set_policy(None, max_age_days=90)
    db.session.commit()
    clock.advance(timedelta(days=91))

    response = sign_in(client, parent.username)

    assert response.headers["Location"].endswith(CHANGE_PAGE)
    assert "Your password has expired." in client.get(CHANGE_PAGE).get_data(as_text=True)
    assert change(client).status_code == 303
    clock.advance(timedelta(days=1))
    fresh = FlaskClient(client.application, use_cookies=True)
    assert sign_in(fresh, parent.username, NEW_PASSWORD).headers["Location"].endswith("/account")


def test_the_change_page_needs_a_genuine_ticket(client: FlaskClient, make_parent):
    parent = make_parent(temporary=True)

    without = client.get(CHANGE_PAGE)
    client.set_cookie("idp_password_change", "forged.value.here", domain="localhost")
    forged = client.get(CHANGE_PAGE)
    sign_in(client, parent.username)
    genuine = client.get(CHANGE_PAGE)

    assert without.status_code == 303 and without.headers["Location"].endswith("/signin")
    assert forged.status_code == 303
    assert genuine.status_code == 200


def test_the_ticket_dies_with_the_change(client: FlaskClient, make_parent):
    parent = make_parent(temporary=True)
    sign_in(client, parent.username)
    ticket = client.get_cookie("idp_password_change")
    assert ticket is not None
    assert change(client).status_code == 303

    client.set_cookie("idp_password_change", ticket.value, domain="localhost")

    assert client.get(CHANGE_PAGE).status_code == 303


def test_the_change_page_counts_wrong_current_passwords_toward_the_lockout(
    app: Flask, client: FlaskClient, make_parent
):
    parent = make_parent(temporary=True)
    sign_in(client, parent.username)
    for _ in range(10):
        change(client, current="not it")

    response = change(client)

    assert response.status_code == 429
    assert "This account is locked because of too many failed sign-in attempts." in response.get_data(
        as_text=True
    )


def test_an_expired_account_is_refused_and_issues_nothing(
    client: FlaskClient, make_parent, clock: FrozenClock
):
    parent = make_parent()
    row = db.session.get(Account, parent.id)
    assert row is not None
    row.expires_at = clock.now() + timedelta(days=1)
    db.session.commit()
    clock.advance(timedelta(days=2))

    response = sign_in(client, parent.username)

    assert response.status_code == 200
    assert "This account has expired." in response.get_data(as_text=True)
    assert count(OPSession) == 0
    assert "idp_session" not in response.headers.get("Set-Cookie", "")


def test_set_temporary_password_prints_one_and_forces_a_change(app: Flask, client: FlaskClient, make_parent):
    parent = make_parent()
    elsewhere = FlaskClient(client.application, use_cookies=True)
    assert sign_in(elsewhere, parent.username).status_code == 303

    result = app.test_cli_runner().invoke(args=["accounts", "set-temporary-password", parent.username])
    db.session.rollback()

    assert result.exit_code == 0, result.output
    temporary = result.stdout.strip()
    assert len(temporary) >= 15 and "\n" not in temporary
    assert "must change this password" in result.stderr
    with app.app_context():
        assert elsewhere.get("/account").status_code == 303  # signed out everywhere
    assert sign_in(client, parent.username, PASSWORD).status_code == 200
    assert sign_in(client, parent.username, temporary).headers["Location"].endswith(CHANGE_PAGE)
    assert change(client, current=temporary).status_code == 303


def test_set_temporary_password_reads_stdin_and_refuses_unknown_users(app: Flask, make_parent):
    parent = make_parent()
    runner = app.test_cli_runner()

    chosen = runner.invoke(
        args=["accounts", "set-temporary-password", parent.username, "--password-stdin"],
        input="Chosen-By-Staff-2026\n",
    )
    unknown = runner.invoke(args=["accounts", "set-temporary-password", "nobody"])

    assert chosen.exit_code == 0 and chosen.stdout == ""
    assert unknown.exit_code != 0 and "no account" in unknown.stderr


def test_odd_input_on_the_change_page_is_refused_cleanly(client: FlaskClient, make_parent):
    parent = make_parent(temporary=True)
    sign_in(client, parent.username)

    oversized = change(client, current="c" * 5000, new="n" * 5000)
    nul = change(client, current=PASSWORD, new="nul\x00 in a long enough password")

    assert oversized.status_code == 400
    assert nul.status_code == 303  # NUL is a character like any other in a password (NFKC keeps it)
