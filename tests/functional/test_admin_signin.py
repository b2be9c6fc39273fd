"""The console's sign-in pages over HTTP: first sign-in, the code step, the guard of every console
page, re-authentication for sensitive actions, sign-out, CSRF."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pyotp
from flask import Flask
from flask.testing import FlaskClient

from idp.accounts.models import Account
from idp.admin.roles import Permission
from idp.admin.views.common import staff_page
from idp.clock import FrozenClock
from idp.web.cookies import staff_cookie_name
from tests.admin_fixtures import STAFF_PASSWORD, csrf_of, totp_code
from tests.conftest import PASSWORD

StaffClient = Callable[..., tuple[FlaskClient, Account]]


def post_form(client: FlaskClient, page: str, action: str, **fields: str):  # type: ignore[no-untyped-def]
    """GET ``page`` for its CSRF token, then POST ``fields`` to ``action``."""
    shown = client.get(page)
    return client.post(action, data={**fields, "csrf_token": csrf_of(shown.text)})


def test_first_sign_in_changes_the_password_enrols_totp_and_shows_backup_codes_once(
    client: FlaskClient, make_staff: Callable[..., Account], clock: FrozenClock
) -> None:
    account = make_staff(enrolled=False, temporary=True)
    answer = post_form(
        client, "/admin/signin", "/admin/signin", username=account.username, password=STAFF_PASSWORD
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/admin/signin/change-password"
    # No console page opens before the steps are done.
    assert client.get("/admin/").headers["Location"] == "/admin/signin/change-password"
    new_password = "A-new-Console-Passphrase-77"
    answer = post_form(
        client,
        "/admin/signin/change-password",
        "/admin/signin/change-password",
        current_password=STAFF_PASSWORD,
        new_password=new_password,
        confirm_password=new_password,
    )
    assert answer.headers["Location"] == "/admin/enrol"
    page = client.get("/admin/enrol")
    assert "<svg" in page.text and "otpauth://totp/" in page.text
    secret = re.search(r'id="totp-key">([A-Z2-7]+)<', page.text)
    assert secret is not None
    answer = client.post(
        "/admin/enrol",
        data={"code": pyotp.TOTP(secret.group(1)).at(clock.now()), "csrf_token": csrf_of(page.text)},
    )
    assert answer.status_code == 200
    codes = re.findall(r"<li>([A-Z0-9]{5}-[A-Z0-9]{5})</li>", answer.text)
    assert len(codes) == 10 and answer.headers["Cache-Control"] == "no-store"
    home = client.get("/admin/")
    assert home.status_code == 200 and account.display_name in home.text
    assert client.get("/admin/enrol").headers["Location"] == "/admin/"


def test_a_console_page_without_a_session_sends_to_sign_in_and_back_after_the_code(
    client: FlaskClient, make_staff: Callable[..., Account]
) -> None:
    account = make_staff()
    answer = client.get("/admin/reauth?next=/admin/accounts")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/admin/signin?next=/admin/reauth?next%3D/admin/accounts"
    answer = post_form(
        client,
        "/admin/signin?next=/admin/accounts",
        "/admin/signin",
        username=account.username,
        password=STAFF_PASSWORD,
        next="/admin/accounts",
    )
    assert answer.headers["Location"] == "/admin/signin/code?next=/admin/accounts"
    answer = post_form(client, answer.headers["Location"], "/admin/signin/code", code="000000")
    assert answer.status_code == 200 and "That code is not right" in answer.text
    page = client.get("/admin/signin/code?next=/admin/accounts")
    answer = client.post(
        "/admin/signin/code",
        data={"code": totp_code(account), "next": "/admin/accounts", "csrf_token": csrf_of(page.text)},
    )
    assert answer.headers["Location"] == "/admin/accounts"


def test_an_outside_next_is_ignored(client: FlaskClient, make_staff: Callable[..., Account]) -> None:
    account = make_staff()
    answer = post_form(
        client,
        "/admin/signin",
        "/admin/signin",
        username=account.username,
        password=STAFF_PASSWORD,
        next="//evil.example/admin",
    )
    assert answer.headers["Location"] == "/admin/signin/code"


def test_a_parent_is_refused_at_the_console_and_staff_at_the_portal_sign_in(
    client: FlaskClient, make_staff: Callable[..., Account], make_account: Callable[..., Account]
) -> None:
    parent = make_account()
    answer = post_form(client, "/admin/signin", "/admin/signin", username=parent.username, password=PASSWORD)
    assert answer.status_code == 200 and "Invalid username or password." in answer.text
    assert staff_cookie_name() not in (answer.headers.get("Set-Cookie") or "")
    account = make_staff()
    answer = post_form(client, "/signin", "/signin", username=account.username, password=STAFF_PASSWORD)
    assert answer.status_code == 200 and "Invalid username or password." in answer.text


def test_a_form_without_its_csrf_token_is_refused(
    client: FlaskClient, make_staff: Callable[..., Account]
) -> None:
    account = make_staff()
    client.get("/admin/signin")
    answer = client.post("/admin/signin", data={"username": account.username, "password": STAFF_PASSWORD})
    assert answer.status_code == 400
    assert staff_cookie_name() not in (answer.headers.get("Set-Cookie") or "")


def test_sections_follow_the_role_and_sign_out_ends_the_session(staff_client: StaffClient) -> None:
    client, _ = staff_client("help-desk")
    home = client.get("/admin/")
    assert 'href="/admin/accounts"' in home.text and 'href="/admin/audit"' not in home.text
    answer = client.post("/admin/signout", data={"csrf_token": csrf_of(home.text)})
    assert answer.headers["Location"] == "/admin/signin"
    assert client.get("/admin/").status_code == 303


def test_the_console_session_times_out_after_fifteen_idle_minutes(
    staff_client: StaffClient, clock: FrozenClock
) -> None:
    client, _ = staff_client()
    clock.advance(timedelta(minutes=15, seconds=1))
    assert client.get("/admin/").headers["Location"].startswith("/admin/signin")


def test_sensitive_actions_ask_for_the_password_and_a_code_after_five_minutes(
    app: Flask, staff_client: StaffClient, clock: FrozenClock
) -> None:
    client, account = staff_client("school-admin", ["LES"])

    @staff_page(Permission.EMULATE, sensitive=True)
    def emulate() -> str:
        return "done"

    @staff_page(Permission.RESET_ALL_PASSWORDS)
    def reset_all() -> str:
        return "done"

    cookie = client.get_cookie(staff_cookie_name())
    assert cookie is not None
    headers = {"Cookie": f"{staff_cookie_name()}={cookie.value}"}
    with app.test_request_context("/admin/accounts/1/emulate", method="POST", headers=headers):
        assert emulate() == "done"
    with app.test_request_context("/admin/reset-all", headers=headers):
        assert reset_all().status_code == 403
    clock.advance(timedelta(minutes=5, seconds=1))
    with app.test_request_context(
        "/admin/accounts/1/emulate", method="POST", headers=headers, data={"next": "/admin/accounts/1"}
    ):
        answer = emulate()
        assert answer.headers["Location"] == "/admin/reauth?next=/admin/accounts/1"
    page = client.get("/admin/reauth?next=/admin/accounts/1")
    answer = client.post(
        "/admin/reauth",
        data={"password": "wrong", "code": totp_code(account), "csrf_token": csrf_of(page.text)},
    )
    assert answer.status_code == 400 and "The password is not right." in answer.text
    answer = client.post(
        "/admin/reauth",
        data={
            "password": STAFF_PASSWORD,
            "code": totp_code(account),
            "next": "/admin/accounts/1",
            "csrf_token": csrf_of(page.text),
        },
    )
    assert answer.headers["Location"] == "/admin/accounts/1"
    with app.test_request_context("/admin/accounts/1/emulate", method="POST", headers=headers):
        assert emulate() == "done"


def test_odd_input_gets_the_ordinary_refusals(
    client: FlaskClient, make_staff: Callable[..., Account]
) -> None:
    account = make_staff()
    for username in ("x" * 5000, "a%b_c*", "\x00admin"):
        answer = post_form(client, "/admin/signin", "/admin/signin", username=username, password="p" * 3000)
        assert answer.status_code == 200 and "Invalid username or password." in answer.text
    post_form(client, "/admin/signin", "/admin/signin", username=account.username, password=STAFF_PASSWORD)
    page = client.get("/admin/signin/code")
    for code in ("9" * 5000, "ABCDE-FGHJK", " 12 34 56 ", "\x00"):
        answer = client.post("/admin/signin/code", data={"code": code, "csrf_token": csrf_of(page.text)})
        assert answer.status_code == 200 and "That code is not right" in answer.text
    answer = client.post(
        "/admin/signin/code",
        data=b"code=%FF%FE&csrf_token=" + csrf_of(page.text).encode(),
        content_type="application/x-www-form-urlencoded",
    )
    assert answer.status_code == 200 and "That code is not right" in answer.text
