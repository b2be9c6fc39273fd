"""``idp staff create`` through Flask's CLI runner: the temporary password once, clear refusals."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import func, select

from idp.accounts.models import Account
from idp.accounts.service import SignInContext
from idp.admin.models import StaffMember, StaffSchool
from idp.admin.staff import Step
from idp.extensions import db
from idp.web.context import services
from tests.functional.test_cli import assert_failed_with_one_line, assert_usage_error

NAMES = ("--email", "ada@district.example.org", "--first-name", "Ada", "--last-name", "Admin")


@pytest.fixture
def idp(app: Flask) -> Callable[..., Result]:
    """Run ``idp ARGS…`` against the test app, then read what it committed."""
    runner = app.test_cli_runner()

    def run(*args: str, input: str | None = None) -> Result:
        result = runner.invoke(args=list(args), input=input)
        db.session.rollback()
        db.session.expire_all()
        return result

    return run


def staff_count() -> int:
    return int(db.session.execute(select(func.count()).select_from(StaffMember)).scalar_one())


def test_staff_create_prints_a_temporary_password_once_that_signs_in_to_the_first_step(
    idp: Callable[..., Result],
) -> None:
    result = idp("staff", "create", "--username", "ada", *NAMES, "--role", "district-admin")
    assert result.exit_code == 0, result.output
    password = result.stdout.removeprefix("temporary password: ").strip()
    assert result.stdout.count(password) == 1 and len(password) >= 15
    console = services().staff().sign_in("ada", password, SignInContext()).console
    assert console.step is Step.CHANGE_PASSWORD and console.actor.whole_district


def test_staff_create_reads_the_password_and_answers_json_for_a_school_admin(
    idp: Callable[..., Result],
) -> None:
    services().guardianship().school("LES")
    db.session.commit()
    result = idp(
        "staff", "create", "--username", "lee", *NAMES, "--role", "school-admin", "--school", "LES",
        "--password-stdin", "--json",
        input="Chosen-Staff-Passphrase-9\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["schools"] == ["LES"] and document["temporary_password"] is None
    account = db.session.get(Account, document["id"])
    assert account is not None and account.must_change_password
    assert db.session.execute(select(StaffSchool)).scalars().one().account_id == account.id


def test_staff_create_refuses_bad_input_in_one_line_and_writes_nothing(idp: Callable[..., Result]) -> None:
    cases = [
        (("--role", "school-admin"), "at least one --school"),
        (("--role", "school-admin", "--school", "NOPE"), "unknown school code: NOPE"),
        (("--role", "help-desk", "--school", "LES"), "--school is for school admins"),
        (("--role", "help-desk", "--password-stdin"), "the password may not be empty"),
    ]
    for extra, message in cases:
        assert_failed_with_one_line(
            idp("staff", "create", "--username", "x", *NAMES, *extra, input="\n"), message
        )
    assert_usage_error(idp("staff", "create", "--username", "x", *NAMES, "--role", "janitor"), "--role")
    assert idp("staff", "create", "--username", "ada", *NAMES, "--role", "help-desk").exit_code == 0
    assert_failed_with_one_line(
        idp("staff", "create", "--username", "ADA", *NAMES, "--role", "help-desk"), "already in use"
    )
    assert staff_count() == 1
