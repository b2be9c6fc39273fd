"""GuardianshipService: students, and the links that make them appear in a guardian's claims."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from idp.accounts.models import AccountType
from idp.extensions import db
from idp.students.guardianship import StudentExists, UnknownStudent
from idp.students.models import GuardianLink, School, Student
from idp.students.relationships import UnknownRelationship
from idp.web.context import services
from tests.integration.helpers import audit_names, count


def test_first_linked_student_becomes_primary(make_account, make_student):
    parent = make_account()
    zoe, adam = make_student(first_name="Zoe"), make_student(first_name="Adam")
    guardianship = services().guardianship()

    guardianship.link(parent, zoe, "Mother")
    guardianship.link(parent, adam, "Mother")
    db.session.commit()

    db.session.expire_all()
    assert parent.primary_student_id == zoe.id


@pytest.mark.parametrize("typed", ["mother", "MOTHER", "  Mother "])
def test_relationship_is_stored_in_canonical_spelling(make_account, make_student, typed):
    parent, student = make_account(), make_student()

    services().guardianship().link(parent, student, typed)
    db.session.commit()

    db.session.expire_all()
    assert db.session.execute(select(GuardianLink.relationship)).scalar_one() == "Mother"
    assert audit_names()[-1] == "guardian_link.created"


def test_unknown_relationship_links_nothing(make_account, make_student):
    parent, student = make_account(), make_student()

    with pytest.raises(UnknownRelationship):
        services().guardianship().link(parent, student, "uncle")

    db.session.rollback()
    assert count(GuardianLink) == 0
    assert parent.primary_student_id is None


def test_student_account_is_linked_to_its_record_as_self(make_account, make_student):
    account = make_account(account_type=AccountType.STUDENT)
    student = make_student()

    link = services().guardianship().link(account, student, "")

    assert link.relationship == "Self"


def test_linking_the_same_student_twice_keeps_one_link(make_account, make_student):
    parent, student = make_account(), make_student()
    guardianship = services().guardianship()

    guardianship.link(parent, student, "Father")
    guardianship.link(parent, student, "father")
    db.session.commit()

    assert count(GuardianLink) == 1


def test_linked_students_are_ordered_by_first_name_then_last_name_then_id(make_account, make_student):
    parent = make_account()
    students = [
        make_student(sis_id="S3", first_name="Zoe", last_name="Rivera"),
        make_student(sis_id="S5", first_name="Adam", last_name="Okafor"),
        make_student(sis_id="S2", first_name="Adam", last_name="Rivera"),
        make_student(sis_id="S1", first_name="Adam", last_name="Okafor"),
        make_student(sis_id="S4", first_name="Maya", last_name="Chen"),
    ]
    guardianship = services().guardianship()
    for student in students:
        guardianship.link(parent, student, "Guardian")
    db.session.commit()

    linked = guardianship.linked_students(parent)

    assert [(s.first_name, s.last_name, s.sis_id) for s, _ in linked] == [
        ("Adam", "Okafor", "S1"),
        ("Adam", "Okafor", "S5"),
        ("Adam", "Rivera", "S2"),
        ("Maya", "Chen", "S4"),
        ("Zoe", "Rivera", "S3"),
    ]
    assert {relationship for _, relationship in linked} == {"Guardian"}


def test_linked_students_are_those_of_the_account_only(make_account, make_student):
    dana, pat = make_account(), make_account()
    zoe, leo = make_student(first_name="Zoe"), make_student(first_name="Leo")
    guardianship = services().guardianship()
    guardianship.link(dana, zoe, "Mother")
    guardianship.link(pat, leo, "Father")
    guardianship.link(pat, zoe, "Stepparent")
    db.session.commit()

    assert [(s.first_name, r) for s, r in guardianship.linked_students(dana)] == [("Zoe", "Mother")]
    assert [(s.first_name, r) for s, r in guardianship.linked_students(pat)] == [
        ("Leo", "Father"),
        ("Zoe", "Stepparent"),
    ]


def test_unknown_school_code_is_created(make_student):
    student = make_student(school_code="NEW")

    assert student.school.code == "NEW"
    assert count(School) == 1


@pytest.mark.parametrize(
    ("sis_id", "access_id", "which"),
    [("S1", "ACCESS-NEW", "id"), ("S-NEW", "ACCESS-1", "Access ID")],
)
def test_student_with_a_taken_id_or_access_id_is_refused(make_student, sis_id, access_id, which):
    make_student(sis_id="S1", access_id="ACCESS-1")

    with pytest.raises(StudentExists, match=which):
        make_student(sis_id=sis_id, access_id=access_id)


def test_student_whose_id_and_access_id_belong_to_two_others_is_refused(make_student):
    make_student(sis_id="S1", access_id="ACCESS-1")
    make_student(sis_id="S2", access_id="ACCESS-2")

    with pytest.raises(StudentExists):
        make_student(sis_id="S1", access_id="ACCESS-2")

    db.session.rollback()
    assert count(Student) == 2


def test_access_password_is_stored_as_argon2id(make_student):
    student = make_student(access_password="orchid-42")

    assert student.access_password_hash.startswith("$argon2id$")
    assert services().hasher.verify(student.access_password_hash, "orchid-42")


def test_unknown_student_id_raises_unknown_student(app):
    with pytest.raises(UnknownStudent):
        services().guardianship().student_by_sis_id("nope")
