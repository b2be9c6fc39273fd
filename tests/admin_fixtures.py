"""Factories for console tests: staff members (``make_staff``), signed-in console clients
(``staff_client``) and admin API clients (``make_admin_client``). Imported into tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from idp.accounts.models import Account
from idp.admin.actor import Actor
from idp.admin.models import StaffMember, StaffRole
from idp.admin.totp import new_totp_secret
from idp.extensions import db
from idp.oauth.clients import ClientSpec
from idp.web.context import services

STAFF_PASSWORD = "Staff-Console-Passphrase-42"


def totp_secret(account: Account) -> str:
    """Return the staff member's TOTP secret (decrypted), enrolled or pending."""
    member = db.session.get(StaffMember, account.id)
    assert member is not None and member.totp_secret is not None, "no TOTP secret"
    return services().staff().cipher.decrypt(member.totp_secret)


def totp_code(account: Account) -> str:
    """Return the code the staff member's authenticator shows now (the app's frozen clock).

    A code is accepted once: move the clock 30 s on before a second one.
    """
    return pyotp.TOTP(totp_secret(account)).at(services().clock.now())


def actor_of(account: Account) -> Actor:
    """Return a staff member made by ``make_staff`` as the admin services' actor."""
    return services().staff().actor_for(account.id)


def csrf_of(html: str) -> str:
    import re

    match = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


@pytest.fixture
def make_staff(app: Flask) -> Callable[..., Account]:
    """Create a staff member through ``StaffService``, without HTTP.

    By default ready to sign in: their own password (``STAFF_PASSWORD``) and TOTP enrolled
    (``totp_code(account)``). ``enrolled=False, temporary=True`` is a first sign-in's state.
    School codes that do not exist yet are created.
    """
    counter = iter(range(1, 10_000))

    def make(
        role: str | StaffRole = StaffRole.DISTRICT_ADMIN,
        schools: Sequence[str] = (),
        *,
        enrolled: bool = True,
        temporary: bool = False,
        **fields: Any,
    ) -> Account:
        n = next(counter)
        built = services()
        for code in schools:
            built.guardianship().school(code)
        values: dict[str, Any] = {
            "username": f"staff{n}",
            "email": f"staff{n}@district.example.org",
            "first_name": "Sam",
            "last_name": f"Staff{n}",
            "password": STAFF_PASSWORD,
        }
        values.update(fields)
        staff = built.staff()
        account = staff.create(role=StaffRole(role), school_codes=list(schools), **values).account
        if not temporary:
            built.password_policies().set_password(account, values["password"])
        if enrolled:
            member = db.session.get(StaffMember, account.id)
            assert member is not None
            member.totp_secret = staff.cipher.encrypt(new_totp_secret())
            member.totp_confirmed_at = built.clock.now()
        db.session.commit()
        return account

    return make


@pytest.fixture
def staff_client(
    app: Flask, make_staff: Callable[..., Account]
) -> Callable[..., tuple[FlaskClient, Account]]:
    """Return a test client signed in to the console through the real pages, and its staff account.

    The sign-in's proof is fresh: sensitive actions work for the next five minutes of the clock.
    """

    def make(
        role: str | StaffRole = StaffRole.DISTRICT_ADMIN, schools: Sequence[str] = (), **fields: Any
    ) -> tuple[FlaskClient, Account]:
        account = make_staff(role, schools, **fields)
        client = app.test_client()
        page = client.get("/admin/signin")
        answer = client.post(
            "/admin/signin",
            data={"username": account.username, "password": STAFF_PASSWORD, "csrf_token": csrf_of(page.text)},
        )
        assert answer.status_code == 303, answer.text
        page = client.get(answer.headers["Location"])
        answer = client.post(
            "/admin/signin/code", data={"code": totp_code(account), "csrf_token": csrf_of(page.text)}
        )
        assert answer.status_code == 303 and answer.headers["Location"] == "/admin/", answer.text
        return client, account

    return make


# --- the admin API's clients -------------------------------------------------------------
@dataclass(frozen=True)
class AdminClient:
    client_id: str
    secret: str


def admin_spec(scope: str) -> ClientSpec:
    return ClientSpec(name="District SIS sync", redirect_uris=[], admin_scope=scope)


@pytest.fixture
def make_admin_client(app: Any) -> Callable[..., AdminClient]:
    def make(scope: str = "admin:write", schools: tuple[str, ...] = ()) -> AdminClient:
        registered = services().admin_clients().register(admin_spec(scope), schools)
        db.session.commit()
        assert registered.client_secret
        return AdminClient(registered.client.client_id, registered.client_secret)

    return make


def ask_token(
    client: FlaskClient, admin: AdminClient, scope: str | None = "admin:write", **form: str
) -> TestResponse:
    data = {"grant_type": "client_credentials", **form}
    if scope is not None:
        data["scope"] = scope
    return client.post("/token", data=data, auth=(admin.client_id, admin.secret))


def bearer(client: FlaskClient, admin: AdminClient, scope: str = "admin:write") -> dict[str, str]:
    response = ask_token(client, admin, scope)
    assert response.status_code == 200, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}
