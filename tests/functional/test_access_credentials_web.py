"""The single-use option over HTTP: set on the console, spent on the students tab."""

from __future__ import annotations

import html
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.accounts.models import Account
from idp.audit import AuditEvent
from idp.extensions import db
from idp.students.models import GuardianLink, Student
from idp.web.context import services
from tests.admin_fixtures import csrf_of
from tests.conftest import csrf_token
from tests.functional import oidc

StaffClient = Callable[..., tuple[FlaskClient, Account]]
CONSOLE_OPTIONS = {"allow_password_change": "y", "lockout_threshold": "10", "lockout_minutes": "5"}


def test_the_console_turns_single_use_access_passwords_on_and_off(staff_client: StaffClient):
    client, staff = staff_client()
    page = client.get("/admin/district")
    assert 'id="single_use_access_passwords" name="single_use_access_passwords" value="y">' in page.text

    on = client.post(
        "/admin/district",
        data={"csrf_token": csrf_of(page.text), **CONSOLE_OPTIONS, "single_use_access_passwords": "y"},
    )

    assert on.status_code == 303
    assert services().district_options().current().single_use_access_passwords is True
    page = client.get("/admin/district")
    assert 'name="single_use_access_passwords" value="y" checked' in page.text
    client.post("/admin/district", data={"csrf_token": csrf_of(page.text), **CONSOLE_OPTIONS})
    assert services().district_options().current().single_use_access_passwords is False
    changes = [
        (e.details["value"], e.details["actor"])
        for e in db.session.execute(
            select(AuditEvent)
            .where(AuditEvent.name == "district_option.changed")
            .order_by(AuditEvent.occurred_at)
        ).scalars()
        if e.details["option"] == "single_use_access_passwords"
    ]
    assert changes == [(True, f"staff:{staff.id}"), (False, f"staff:{staff.id}")]


def add_student(app: Flask, username: str) -> str:
    """Sign ``username`` in on a browser of its own and add the student AR-2 on the students tab."""
    client = app.test_client()
    with app.app_context():
        assert oidc.sign_in(client, username).status_code == 303
        token = csrf_token(client.get("/account/students").get_data(as_text=True))
        response = client.post(
            "/account/students",
            data={
                "csrf_token": token,
                "name": "Adam",
                "access_id": "AR-2",
                "access_password": "comet-17",
                "relationship": "Father",
            },
        )
        return html.unescape(response.get_data(as_text=True)) if response.status_code != 303 else "linked"


def test_on_the_students_tab_a_single_use_password_links_the_first_guardian_only(
    app: Flask, make_account: Callable[..., Account], make_student: Callable[..., Student]
):
    make_student(
        sis_id="100235", first_name="Adam", last_name="Rivera", access_id="AR-2", access_password="comet-17"
    )
    make_account(username="dana.rivera", email="dana@example.org")
    make_account(username="sam.rivera", email="sam@example.org")
    services().district_options().set(single_use_access_passwords=True)
    db.session.commit()

    assert add_student(app, "dana.rivera") == "linked"
    second = add_student(app, "sam.rivera")

    assert "The Access ID or Access Password is not correct." in second
    db.session.rollback()
    assert len(db.session.execute(select(GuardianLink)).all()) == 1
