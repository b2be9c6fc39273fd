"""The console's district options and "Configure Password Requirements" pages over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.accounts.models import Account
from idp.accounts.policy_models import DistrictOption, PasswordPolicyRecord
from idp.admin.models import StaffRole
from idp.audit import AuditEvent
from idp.extensions import db
from idp.students.models import Student
from idp.web.context import services
from tests.admin_fixtures import csrf_of

StaffClient = Callable[..., tuple[FlaskClient, Account]]
NIST_RULES = {
    "min_length": "15",
    "history_count": "0",
    "max_age_days": "0",
    "block_common": "y",
    "block_context": "y",
}
COMPOSITION = "SP 800-63B-4 3.1.1.2 forbids requiring mixtures of character types"


def audited(name: str) -> list[dict[str, Any]]:
    db.session.rollback()
    return [
        e.details for e in db.session.execute(select(AuditEvent).where(AuditEvent.name == name)).scalars()
    ]


def test_district_options_save_the_clis_data_audited_and_only_with_a_csrf_token(
    staff_client: StaffClient,
) -> None:
    client, staff = staff_client()
    page = client.get("/admin/district")
    assert page.status_code == 200
    assert 'id="allow_email_change" name="allow_email_change" value="y" checked' in page.text
    assert 'name="lockout_threshold" type="number" inputmode="numeric" value="10"' in page.text
    assert 'name="lockout_minutes" type="number" inputmode="numeric" value="5"' in page.text
    chosen = {
        "allow_password_change": "y",
        "require_email_verification": "y",
        "lockout_threshold": "10",
        "lockout_minutes": "15",
    }

    forged = client.post("/admin/district", data=chosen)
    refused = client.post(
        "/admin/district", data={"csrf_token": csrf_of(page.text), **chosen, "lockout_minutes": "0"}
    )
    assert forged.status_code == 400 and refused.status_code == 400
    assert 'href="#lockout_minutes">The lock must last 1 to 1440 minutes.</a>' in refused.text
    field = refused.text.split('id="lockout_minutes" name="lockout_minutes"', 1)[1].split(">", 1)[0]
    assert 'aria-invalid="true" aria-describedby="lockout_minutes-errors"' in field
    assert db.session.execute(select(DistrictOption)).first() is None

    answer = client.post("/admin/district", data={"csrf_token": csrf_of(page.text), **chosen})

    assert answer.status_code == 303 and answer.headers["Location"] == "/admin/district"
    options = services().district_options().current()
    assert (options.allow_email_change, options.require_email_verification) == (False, True)
    assert (options.lockout_threshold, options.lockout_seconds) == (10, 900)
    assert sorted((d["option"], d["actor"]) for d in audited("district_option.changed")) == [
        ("allow_email_change", f"staff:{staff.id}"),
        ("lockout_seconds", f"staff:{staff.id}"),
        ("require_email_verification", f"staff:{staff.id}"),
    ]
    assert "The district options were saved." in client.get("/admin/district").text


def test_a_schools_composition_rule_is_saved_audited_and_warned_of(
    staff_client: StaffClient, make_student: Callable[..., Student]
) -> None:
    make_student(school_code="LES")
    client, staff = staff_client()
    listing = client.get("/admin/policies")
    assert 'href="/admin/policies/LES"' in listing.text and 'href="/admin/policies/district"' in listing.text
    page = client.get("/admin/policies/LES")
    assert 'id="takes-default"' in page.text and 'id="departures"' not in page.text

    answer = client.post(
        "/admin/policies/LES", data={"csrf_token": csrf_of(page.text), **NIST_RULES, "require_special": "y"}
    )

    assert answer.status_code == 303
    shown = client.get("/admin/policies/LES").text
    assert f"Departs from NIST SP 800-63B-4: composition rules (a special character) — {COMPOSITION}" in shown
    assert [(d["school"], d["actor"]) for d in audited("password_policy.changed")] == [
        ("LES", f"staff:{staff.id}")
    ]
    assert services().password_policies().district_default().require_special is False

    reset = client.post("/admin/policies/LES/reset", data={"csrf_token": csrf_of(shown)})
    assert reset.status_code == 303 and 'id="takes-default"' in client.get("/admin/policies/LES").text
    assert [(d["school"], d["actor"]) for d in audited("password_policy.removed")] == [
        ("LES", f"staff:{staff.id}")
    ]


def test_bad_requirements_are_refused_on_the_page_and_nothing_is_written(staff_client: StaffClient) -> None:
    client, _ = staff_client()
    page = client.get("/admin/policies/district")
    forged = client.post("/admin/policies/district", data={**NIST_RULES, "require_special": "y"})
    assert forged.status_code == 400

    answer = client.post(
        "/admin/policies/district",
        data={"csrf_token": csrf_of(page.text), **NIST_RULES, "min_length": "4", "history_count": "x"},
    )

    assert answer.status_code == 400
    assert "The minimum length must be 8 to 256." in answer.text
    assert 'id="history_count-errors"' in answer.text
    # The summary, first and focused, links each problem to its field.
    summary = answer.text.split('id="error-summary"', 1)[1].split("</div>", 1)[0]
    assert 'href="#min_length">The minimum length must be 8 to 256.</a>' in summary
    assert 'href="#history_count"' in summary and 'href="#max_age_days"' not in summary
    assert db.session.execute(select(PasswordPolicyRecord)).first() is None
    assert client.get("/admin/policies/NO-SUCH-SCHOOL").status_code == 404


def test_a_help_desk_may_open_none_of_these_pages(staff_client: StaffClient) -> None:
    client, _ = staff_client(StaffRole.HELP_DESK)
    for path in ("/admin/district", "/admin/policies", "/admin/policies/district"):
        assert client.get(path).status_code == 403, path
    token = csrf_of(client.get("/admin/").text)  # the sign-out form's
    answer = client.post("/admin/district", data={"csrf_token": token, "require_email_verification": "y"})
    assert answer.status_code == 403
    assert db.session.execute(select(DistrictOption)).first() is None


def test_the_cli_sets_and_shows_the_lockout_the_console_edits(app: Flask) -> None:
    runner = app.test_cli_runner()

    refused = runner.invoke(args=["district", "set", "--lockout-threshold", "0"])
    saved = runner.invoke(args=["district", "set", "--lockout-threshold", "5", "--lockout-seconds", "600"])
    shown = json.loads(runner.invoke(args=["district", "show", "--json"]).stdout)

    assert (
        refused.exit_code != 0 and "the lockout threshold must be 1 to 100 failed sign-ins" in refused.output
    )
    assert saved.exit_code == 0
    assert (shown["lockout_threshold"], shown["lockout_seconds"]) == (5, 600)
    assert services().lockout.policy.duration.total_seconds() == 600
