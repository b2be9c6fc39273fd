"""Tabs from the students claim, the made-up records, and the XML download."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from relying_party_demo.export import export_filename, student_xml
from relying_party_demo.students import SCHOOLS, LinkedStudent, demo_record, first_student, linked_students
from tests.rp.conftest import dana_claims


def student(**fields: str) -> LinkedStudent:
    values = {"id": "100234", "given_name": "Zoe", "family_name": "Rivera", "school_id": "WMS"}
    values.update(fields)
    return LinkedStudent(relationship="Mother", **values)


def test_tabs_are_in_alphabetical_order_of_first_name_then_last_name_then_id() -> None:
    claims = {
        "students": [
            {"id": "3", "given_name": "maya", "family_name": "Chen", "school_id": "LES"},
            {"id": "2", "given_name": "Adam", "family_name": "Rivera", "school_id": "LES"},
            {"id": "9", "given_name": "Maya", "family_name": "Abbott", "school_id": "LES"},
            {"id": "1", "given_name": "Adam", "family_name": "Rivera", "school_id": "WMS"},
        ]
    }
    assert [(s.given_name, s.id) for s in linked_students(claims)] == [
        ("Adam", "1"),
        ("Adam", "2"),
        ("Maya", "9"),
        ("maya", "3"),
    ]


def test_malformed_or_repeated_student_entries_are_left_out() -> None:
    claims = {
        "students": [
            "100234",
            {"id": "", "given_name": "No", "family_name": "Id", "school_id": "LES"},
            {"id": 7, "given_name": "Number", "family_name": "Id", "school_id": "LES"},
            {"id": "5", "given_name": "Ok", "family_name": "Kid", "school_id": "LES"},
            {"id": "5", "given_name": "Again", "family_name": "Kid", "school_id": "LES"},
        ]
    }
    assert [s.given_name for s in linked_students(claims)] == ["Ok"]
    assert linked_students({"students": "junk"}) == [] == linked_students({})


def test_the_start_page_shows_the_primary_student_else_the_first_tab() -> None:
    students = linked_students(dana_claims())
    assert [s.given_name for s in students] == ["Adam", "Ben", "Zoe"]
    assert first_student(students, "100234") == students[2]
    assert first_student(students, "not-linked") == students[0]
    assert first_student(students, None) == students[0]
    assert first_student([], "100234") is None


def test_records_are_made_up_the_same_every_time_for_the_demo_schools() -> None:
    zoe = demo_record(student())
    assert zoe is not None and zoe == demo_record(student())
    assert [g.course for g in zoe.grades] == list(SCHOOLS["WMS"].courses)
    assert all(68 <= g.percent <= 99 and g.letter in "ABCD" for g in zoe.grades)
    days = zoe.attendance
    assert days.days_present + days.excused_absences + days.unexcused_absences == days.days_enrolled
    # Another student of the same school gets other numbers.
    other = demo_record(student(id="100311"))
    assert other is not None and other.grades != zoe.grades


def test_a_school_outside_the_demo_district_has_no_record() -> None:
    assert demo_record(student(school_id="NHS")) is None


def test_the_xml_download_escapes_what_the_names_hold() -> None:
    record = demo_record(student(id="a/b<1>", given_name='Zoë "Z" <b>&amp;', family_name="O'Neil\x07"))
    assert record is not None
    document = student_xml(record)
    assert document.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.fromstring(document)  # noqa: S314 (our own output)
    assert root.tag == "student" and root.get("id") == "a/b<1>"
    assert root.findtext("name/given") == 'Zoë "Z" <b>&amp;'
    assert root.findtext("name/family") == "O'Neil\ufffd"  # a control character XML cannot hold
    courses = root.findall("grades/course")
    assert [c.get("name") for c in courses] == list(SCHOOLS["WMS"].courses)
    assert courses[0].findtext("percent") == str(record.grades[0].percent)
    assert root.findtext("attendance/daysPresent") == str(record.attendance.days_present)
    assert export_filename(record) == "student-a_b_1-grades-attendance.xml"
