"""``idp schools`` and ``idp students issue-access | rotate-access``, through Flask's CLI runner."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import select

from idp.audit import AuditEvent
from idp.extensions import db
from idp.students.access import AccessDenied
from idp.students.credentials import ACCESS_PASSWORD_ALPHABET
from idp.students.models import School, Student
from idp.web.context import services
from tests.functional.test_cli import assert_failed_with_one_line


@pytest.fixture
def idp(app: Flask) -> Callable[..., Result]:
    """Run ``idp ARGS…`` against the test app, then read what it committed."""
    runner = app.test_cli_runner()

    def run(*args: str) -> Result:
        result = runner.invoke(args=list(args))
        db.session.rollback()
        db.session.expire_all()
        return result

    return run


def check(access_id: str, password: str) -> Student:
    return services().student_access().check(access_id, password, ip_address="203.0.113.7")


def test_schools_create_list_and_update(idp):
    created = idp(
        "schools", "create", "--code", "RHS", "--name", "Roosevelt High School",
        "--timezone", "America/Chicago", "--address", "1200 Elm Street", "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout) == {
        "code": "RHS",
        "name": "Roosevelt High School",
        "timezone": "America/Chicago",
        "address": "1200 Elm Street",
    }
    assert idp("schools", "create", "--code", "LES", "--name", "Lincoln Elementary School").exit_code == 0

    updated = idp("schools", "update", "RHS", "--name", "Roosevelt HS", "--timezone", "")
    listed = idp("schools", "list", "--json")

    assert updated.exit_code == 0 and "updated school RHS" in updated.stderr
    assert json.loads(listed.stdout) == [
        {"code": "LES", "name": "Lincoln Elementary School", "timezone": None, "address": None},
        {"code": "RHS", "name": "Roosevelt HS", "timezone": None, "address": "1200 Elm Street"},
    ]
    table = idp("schools", "list").stdout.splitlines()
    assert table[0].split()[:4] == ["LES", "Lincoln", "Elementary", "School"]
    actors = db.session.execute(
        select(AuditEvent.details).where(AuditEvent.name.in_(["school.created", "school.updated"]))
    ).scalars()
    assert {details["actor"] for details in actors} == {f"cli:{getpass.getuser()}"}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("schools", "create", "--code", "RHS", "--name", "R", "--timezone", "Mars/Olympus"), "IANA"),
        (("schools", "create", "--code", "R HS", "--name", "R"), "school code"),
        (("schools", "update", "NOPE", "--name", "Nope"), "no school with code 'NOPE'"),
        (("schools", "update", "LES"), "give --name, --timezone or --address"),
    ],
)
def test_bad_school_commands_fail_with_one_line_and_write_nothing(idp, make_student, args, fragment):
    make_student(school_code="LES")

    assert_failed_with_one_line(idp(*args), fragment)
    assert [s.code for s in db.session.execute(select(School)).scalars()] == ["LES"]


def test_a_taken_code_fails_cleanly(idp):
    idp("schools", "create", "--code", "RHS", "--name", "Roosevelt High School")

    assert_failed_with_one_line(
        idp("schools", "create", "--code", "RHS", "--name", "Again"), "already exists"
    )


# --- issue-access and rotate-access ------------------------------------------------------------
def test_issue_access_for_a_school_prints_each_students_new_credentials_once(idp, make_student, caplog):
    zoe = make_student(sis_id="100234", first_name="Zoe", access_id="ZR-1", access_password="orchid-42")
    make_student(sis_id="100235", first_name="Adam", access_id="AR-2", access_password="comet-17")
    make_student(sis_id="200001", school_code="WMS", access_id="WMS-1", access_password="keep-me")

    result = idp("students", "issue-access", "--school", "LES", "--json")

    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    # By last name, then first name: Adam before Zoe.
    assert [(r["id"], r["access_id"]) for r in rows] == [("100235", "AR-2"), ("100234", "ZR-1")]
    for row in rows:
        assert len(row["access_password"]) == 12
        assert set(row["access_password"]) <= set(ACCESS_PASSWORD_ALPHABET)
        assert row["access_password"] not in result.stderr and row["access_password"] not in caplog.text
    assert check("ZR-1", rows[1]["access_password"]).id == zoe.id
    with pytest.raises(AccessDenied):
        check("ZR-1", "orchid-42")
    assert check("WMS-1", "keep-me").sis_id == "200001"  # another school's student is left alone


def test_issue_access_for_named_students_prints_a_table(idp, make_student):
    make_student(sis_id="100234", access_id="ZR-1")
    make_student(sis_id="100235", access_id="AR-2")

    result = idp("students", "issue-access", "--student", "100235", "--student", "100234")

    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.splitlines()]
    assert [line[:2] for line in lines] == [["100235", "AR-2"], ["100234", "ZR-1"]]
    assert check("AR-2", lines[0][2]).sis_id == "100235"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--school", "LES", "--student", "100234"), "either --school CODE or --student ID"),
        ((), "either --school CODE or --student ID"),
        (("--school", "NOPE"), "no school with code 'NOPE'"),
        (("--student", "100234", "--student", "NOPE"), "no student with id 'NOPE'"),
    ],
)
def test_bad_issue_access_fails_and_changes_no_password(idp, make_student, args, fragment):
    make_student(sis_id="100234", access_id="ZR-1", access_password="orchid-42")

    assert_failed_with_one_line(idp("students", "issue-access", *args), fragment)
    assert check("ZR-1", "orchid-42").sis_id == "100234"


def test_rotate_access_gives_a_new_password_and_the_old_one_stops_working(idp, make_student):
    make_student(sis_id="100234", access_id="ZR-1", access_password="orchid-42")

    result = idp("students", "rotate-access", "100234", "--json")

    assert result.exit_code == 0, result.output
    ((row),) = json.loads(result.stdout)
    assert row["access_id"] == "ZR-1"
    assert check("ZR-1", row["access_password"]).sis_id == "100234"
    with pytest.raises(AccessDenied):
        check("ZR-1", "orchid-42")


def test_rotate_access_with_new_id_retires_the_old_access_id(idp, make_student):
    make_student(sis_id="100234", access_id="ZR-1")

    (row,) = json.loads(idp("students", "rotate-access", "100234", "--new-id", "--json").stdout)

    assert row["access_id"] != "ZR-1"
    with pytest.raises(AccessDenied):
        check("ZR-1", row["access_password"])


def test_rotate_access_of_an_unknown_student_fails_cleanly(idp):
    assert_failed_with_one_line(idp("students", "rotate-access", "NOPE"), "no student with id 'NOPE'")
