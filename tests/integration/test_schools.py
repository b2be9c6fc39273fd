"""SchoolService: schools with names, time zones and addresses, audited, on both databases."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from idp.audit import AuditEvent
from idp.extensions import db
from idp.students.schools import NoSuchSchool, SchoolExists, SchoolRefused
from idp.web.context import services
from tests.integration.helpers import audit_names


def test_a_school_is_created_with_its_name_zone_and_address_and_audited(app):
    school = (
        services()
        .schools()
        .create(
            code=" RHS ",
            name="Roosevelt  High School",
            timezone="America/Chicago",
            address="1200 Elm Street\n\n  Springfield, IL 62701 ",
            actor="cli:ops",
        )
    )
    db.session.commit()

    assert (school.code, school.name, school.timezone) == ("RHS", "Roosevelt High School", "America/Chicago")
    assert school.address == "1200 Elm Street\nSpringfield, IL 62701"
    event = db.session.execute(select(AuditEvent).where(AuditEvent.name == "school.created")).scalar_one()
    assert event.details == {
        "school": "RHS",
        "name": "Roosevelt High School",
        "timezone": "America/Chicago",
        "address": "1200 Elm Street\nSpringfield, IL 62701",
        "actor": "cli:ops",
    }


def test_a_school_without_a_zone_takes_the_districts(app):
    schools = services().schools()
    school = schools.create(code="LES", name="Lincoln Elementary School")

    assert school.timezone is None and school.address is None
    assert schools.zone(school) == ZoneInfo(services().settings.timezone)
    schools.update("LES", timezone="Pacific/Honolulu")
    assert schools.zone(school) == ZoneInfo("Pacific/Honolulu")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"code": "", "name": "Nameless"}, "school code"),
        ({"code": "R HS", "name": "Spaced"}, "school code"),
        ({"code": "X" * 33, "name": "Long code"}, "school code"),
        ({"code": "RHS", "name": "  "}, "name"),
        ({"code": "RHS", "name": "N" * 201}, "name"),
        ({"code": "RHS", "name": "Tab\x00bed"}, "name"),
        ({"code": "RHS", "name": "Roosevelt", "timezone": "Mars/Olympus"}, "IANA"),
        ({"code": "RHS", "name": "Roosevelt", "timezone": "../../etc/passwd"}, "IANA"),
        ({"code": "RHS", "name": "Roosevelt", "address": "A" * 501}, "address"),
    ],
)
def test_bad_values_are_refused_and_nothing_is_written(app, fields, message):
    with pytest.raises(SchoolRefused, match=message):
        services().schools().create(**fields)
    db.session.rollback()

    assert services().schools().all() == []


def test_a_taken_code_is_refused(app):
    services().schools().create(code="RHS", name="Roosevelt High School")

    with pytest.raises(SchoolExists):
        services().schools().create(code="RHS", name="Another")


def test_an_update_changes_what_is_given_and_audits_only_the_changes(app):
    schools = services().schools()
    schools.create(code="RHS", name="RHS", timezone="America/Chicago", address="1 Main St")

    school = schools.update("RHS", name="Roosevelt High School", timezone="America/Chicago", actor="cli:ops")
    db.session.commit()

    assert (school.name, school.timezone, school.address) == (
        "Roosevelt High School",
        "America/Chicago",
        "1 Main St",
    )
    event = db.session.execute(select(AuditEvent).where(AuditEvent.name == "school.updated")).scalar_one()
    assert event.details == {
        "school": "RHS",
        "changes": {"name": "Roosevelt High School"},
        "actor": "cli:ops",
    }


def test_an_empty_zone_or_address_clears_it(app):
    schools = services().schools()
    schools.create(code="RHS", name="Roosevelt", timezone="America/Chicago", address="1 Main St")

    school = schools.update("RHS", timezone="", address=" ")

    assert school.timezone is None and school.address is None


def test_an_update_that_changes_nothing_is_not_audited(app):
    schools = services().schools()
    schools.create(code="RHS", name="Roosevelt")

    schools.update("RHS", name="Roosevelt")

    assert "school.updated" not in audit_names()


def test_an_unknown_school_cannot_be_updated(app):
    with pytest.raises(NoSuchSchool):
        services().schools().update("NOPE", name="Nope")


def test_students_create_still_makes_an_unknown_school_named_by_its_code(make_student):
    student = make_student(school_code="NEW")

    assert (student.school.code, student.school.name) == ("NEW", "NEW")


def test_active_students_are_listed_by_last_name_then_first_name_then_id(make_student):
    make_student(sis_id="3", first_name="Zoe", last_name="Adams")
    make_student(sis_id="2", first_name="Adam", last_name="Baker")
    make_student(sis_id="1", first_name="Zoe", last_name="Adams")
    gone = make_student(sis_id="4", first_name="Ann", last_name="Abbott")
    gone.active = False
    make_student(sis_id="5", school_code="WMS")
    db.session.commit()

    assert [s.sis_id for s in services().schools().active_students("LES")] == ["1", "3", "2"]
