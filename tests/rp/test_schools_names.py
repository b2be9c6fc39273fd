"""The demo portal shows the school's name the provider sends (``students[].school_name``)."""

from __future__ import annotations

from flask.testing import FlaskClient

from relying_party_demo.students import SCHOOLS, demo_record, linked_students
from tests.rp.conftest import SignIn, dana_claims
from tests.rp.test_pages import NOT_AVAILABLE, text_of


def named(claims: dict[str, object], names: dict[str, str]) -> dict[str, object]:
    """``claims`` whose students carry ``school_name`` for the schools in ``names``."""
    students = claims["students"]
    assert isinstance(students, list)
    for student in students:
        if student["school_id"] in names:
            student["school_name"] = names[student["school_id"]]
    return claims


def test_the_claims_school_name_is_read_and_wins_over_the_portals_own() -> None:
    claims = named(dana_claims(), {"WMS": "Washington Middle School of the Arts"})

    zoe = next(s for s in linked_students(claims) if s.id == "100234")
    record = demo_record(zoe)

    assert zoe.school_name == "Washington Middle School of the Arts"
    assert record is not None and record.school.name == "Washington Middle School of the Arts"
    assert record.school.courses == SCHOOLS["WMS"].courses


def test_without_a_school_name_the_portal_keeps_its_own() -> None:
    adam = next(s for s in linked_students(dana_claims()) if s.id == "100235")

    assert adam.school_name == ""
    record = demo_record(adam)
    assert record is not None and record.school.name == "Lincoln Elementary School"


def test_a_students_page_names_the_school_even_without_a_record(
    portal: FlaskClient, sign_in_as: SignIn
) -> None:
    sign_in_as(named(dana_claims(), {"NHS": "Northside High School", "WMS": "Washington Middle School"}))

    ben = text_of(portal.get("/students/900001").get_data(as_text=True))
    zoe = text_of(portal.get("/students/100234").get_data(as_text=True))

    assert "Northside High School" in ben and NOT_AVAILABLE in ben
    assert "Washington Middle School · Semester 1" in zoe
