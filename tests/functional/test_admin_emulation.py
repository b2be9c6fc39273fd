"""Emulating a parent through the console: the banner, the refusals, the act claim, the end."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.accounts.models import Account, AccountType
from idp.clock import FrozenClock
from idp.config import Settings
from idp.extensions import db
from idp.mail.delivery import deliver_due
from idp.oauth.models import RefreshTokenFamily
from idp.web.context import services
from tests.admin_fixtures import csrf_of
from tests.conftest import PASSWORD, AuthRequest, RegisteredTestClient, csrf_token, settings_for_tests
from tests.functional.oidc import authorize_as, redeem
from tests.functional.tokens import OFFLINE_SCOPE, audit_names, introspect, refresh, verified_claims
from tests.smtp import Inbox, text_of

REASON = "Parent on the phone: cannot find the report cards"


@pytest.fixture
def settings(database_url: str, keys_dir: Path, mailbox: tuple[Inbox, int]) -> Settings:
    return settings_for_tests(database_url, keys_dir, smtp_url=f"smtp://127.0.0.1:{mailbox[1]}")


def emulate(console: FlaskClient, account: Account, reason: str = REASON) -> Any:
    token = csrf_of(console.get("/admin/").text)
    return console.post(f"/admin/accounts/{account.id}/emulate", data={"csrf_token": token, "reason": reason})


def end(console: FlaskClient) -> Any:
    token = csrf_token(console.get("/account").text)
    return console.post("/admin/emulation/end", data={"csrf_token": token})


def test_the_parent_is_told_and_shown_with_a_banner_and_no_credential_changes(
    staff_client: Callable[..., tuple[FlaskClient, Account]],
    make_account: Callable[..., Account],
    mailbox: tuple[Inbox, int],
) -> None:
    console, _staff = staff_client(first_name="Dana", last_name="Admin")
    parent = make_account(first_name="Rosa", last_name="Parks", email="rosa@example.org")
    password_hash = parent.password_hash

    started = emulate(console, parent)
    assert (started.status_code, started.headers["Location"]) == (303, "/account")
    page = console.get("/account")
    assert page.status_code == 200
    assert "You are viewing as Rosa Parks" in page.text and 'id="emulation-end"' in page.text
    assert "You are viewing as Rosa Parks" in console.get("/admin/").text

    refused = console.post(
        "/account/password",
        data={
            "csrf_token": csrf_token(page.text),
            "current_password": PASSWORD,
            "new_password": "a-brand-new-passphrase-77",
            "confirm_password": "a-brand-new-passphrase-77",
        },
    )
    assert refused.status_code == 403
    assert "cannot be changed here" in refused.text
    db.session.refresh(parent)
    assert parent.password_hash == password_hash
    linking = console.post(
        "/account/students",
        data={"csrf_token": csrf_token(page.text), "access_id": "X", "access_password": "Y"},
    )
    assert linking.status_code == 403
    assert "emulation.started" in audit_names()
    built = services()
    deliver_due(built.session, built.mail_transport, sender=built.settings.mail_from, clock=built.clock)
    (notice,) = mailbox[0].to("rosa@example.org")
    assert notice["Subject"] == "A member of the district staff viewed your account"
    assert "Dana Admin" in text_of(notice) and REASON in text_of(notice)

    # The parent's own Sign out ends the emulation too.
    assert console.post("/logout", data={"csrf_token": csrf_token(page.text)}).status_code == 200
    assert "emulation.ended" in audit_names()


def test_portals_get_tokens_that_name_the_staff_member_until_the_end(
    staff_client: Callable[..., tuple[FlaskClient, Account]],
    make_account: Callable[..., Account],
    make_client: Callable[..., RegisteredTestClient],
    clock: FrozenClock,
) -> None:
    console, staff = staff_client()
    parent = make_account()
    portal = make_client(scope=OFFLINE_SCOPE)
    emulate(console, parent)
    act = {"sub": f"staff:{staff.id}"}

    auth = AuthRequest(portal.client_id, scope=OFFLINE_SCOPE)
    code = authorize_as(console, auth, parent.username, password="not-asked")["code"]
    tokens = redeem(console, auth, code, portal.client_secret).get_json()
    verified_claims(console, tokens["id_token"], sub=parent.id, act=act)
    verified_claims(console, tokens["access_token"], sub=parent.id, act=act)
    family = db.session.execute(select(RefreshTokenFamily)).scalar_one()
    # What was granted in the emulation ends with it, at the latest.
    assert family.expires_at == clock.now() + timedelta(minutes=30)
    renewed = refresh(console, portal.client_id, portal.client_secret, tokens["refresh_token"]).get_json()
    verified_claims(console, renewed["id_token"], act=act)
    verified_claims(console, renewed["access_token"], act=act)
    inspected = introspect(console, portal.client_id, portal.client_secret, renewed["access_token"])
    assert inspected.get_json()["act"] == act

    ended = end(console)

    assert (ended.status_code, ended.headers["Location"]) == (303, f"/admin/accounts/{parent.id}")
    assert console.get("/account").status_code == 303  # signed out: to the sign-in page
    assert "emulation.ended" in audit_names()
    again = refresh(console, portal.client_id, portal.client_secret, renewed["refresh_token"])
    assert again.get_json()["error"] == "invalid_grant"


def test_staff_out_of_reach_no_reason_or_no_csrf_start_nothing(
    staff_client: Callable[..., tuple[FlaskClient, Account]],
    make_account: Callable[..., Account],
) -> None:
    console, _ = staff_client()
    parent = make_account()
    other_staff = make_account(account_type=AccountType.STAFF)

    assert emulate(console, other_staff).status_code == 404
    missing = emulate(console, parent, reason="  ")
    assert missing.status_code == 400 and "Enter the reason" in missing.text
    no_csrf = console.post(f"/admin/accounts/{parent.id}/emulate", data={"reason": REASON})
    assert no_csrf.status_code == 400
    assert "emulation.started" not in audit_names()
