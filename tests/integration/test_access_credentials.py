"""Issuing Access IDs and Access Passwords, and the district's single-use option, on both databases."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from idp.accounts.models import Account
from idp.accounts.registration import Problem
from idp.audit import AuditEvent
from idp.extensions import db
from idp.students import credentials
from idp.students.access import AccessDenied
from idp.students.credentials import ACCESS_ID_ALPHABET, IssuedAccess
from idp.students.guardianship import AccessSpent
from idp.students.models import GuardianLink, Student
from idp.web.context import services
from tests.integration.helpers import count
from tests.integration.test_registration import (
    CountingHasher,
    access_service,
    entry,
    form,
    refused,
    registration_service,
)


@pytest.fixture
def zoe(make_student: Callable[..., Student]) -> Student:
    return make_student(
        sis_id="100234", first_name="Zoe", last_name="Rivera", access_id="ZR-1", access_password="orchid-42"
    )


def check(access_id: str, password: str) -> Student:
    return access_service().check(access_id, password, ip_address="203.0.113.7")


def issue(student: Student, **options: Any) -> IssuedAccess:
    issued = services().access_issuer().issue(student, **options)
    db.session.commit()
    return issued


def events(name: str) -> list[AuditEvent]:
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.name == name)).scalars())


def single_use(on: bool) -> None:
    services().district_options().set(single_use_access_passwords=on)
    db.session.commit()


def test_issuing_keeps_the_access_id_and_replaces_the_password(zoe):
    issued = issue(zoe, actor="cli:ops")

    assert (issued.student_id, issued.sis_id, issued.access_id) == (zoe.id, "100234", "ZR-1")
    assert check("ZR-1", issued.access_password).id == zoe.id
    with pytest.raises(AccessDenied):
        check("ZR-1", "orchid-42")  # the old one stops working
    (event,) = events("student.access_issued")
    assert event.details == {"student_id": "100234", "access_id": "ZR-1", "new_id": False, "actor": "cli:ops"}


def test_a_new_id_is_drawn_when_asked_and_the_old_id_stops_working(zoe):
    issued = issue(zoe, new_id=True)

    assert issued.access_id != "ZR-1"
    assert set(issued.access_id.replace("-", "")) <= set(ACCESS_ID_ALPHABET)
    assert check(issued.access_id, issued.access_password).id == zoe.id
    with pytest.raises(AccessDenied):
        check("ZR-1", issued.access_password)


def test_the_password_is_stored_as_argon2id_and_never_logged_or_audited(zoe, caplog):
    with caplog.at_level(logging.DEBUG):
        issued = issue(zoe)

    db.session.refresh(zoe)
    assert zoe.access_password_hash is not None
    assert zoe.access_password_hash.startswith("$argon2id$")
    assert issued.access_password not in zoe.access_password_hash
    assert issued.access_password not in caplog.text
    assert all(issued.access_password not in json.dumps(e.details) for e in events("student.access_issued"))


def test_a_roster_student_gets_an_access_id_without_a_password_and_cannot_link_yet(app, zoe):
    student = Student(sis_id="100236", first_name="Max", last_name="Rivera", school_id=zoe.school_id)
    access_id = services().access_issuer().assign_access_id(student)
    db.session.add(student)
    db.session.commit()

    assert student.access_id == access_id and student.access_password_hash is None
    # The same answer and the same cost (one argon2 verification) as a wrong password.
    access = access_service()
    hasher = CountingHasher(access.hasher)
    access.hasher = hasher  # type: ignore[assignment]
    with pytest.raises(AccessDenied):
        access.check(access_id, "", ip_address="203.0.113.7")
    assert hasher.verifies == 1
    assert events("student_access.failed")[-1].details["reason"] == "credentials"
    # A second assignment keeps the Access ID the letters may already show.
    assert services().access_issuer().assign_access_id(student) == access_id

    issued = issue(student)

    assert issued.access_id == access_id
    assert check(access_id, issued.access_password).id == student.id


@pytest.fixture
def draws(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The Access IDs the issuer draws next, in order (the random draw of the rest of the time)."""
    queued: list[str] = []
    real = credentials.new_access_id
    monkeypatch.setattr(credentials, "new_access_id", lambda: queued.pop(0) if queued else real())
    yield queued


def test_a_drawn_access_id_already_taken_is_drawn_again(make_student, draws):
    make_student(access_id="TAKE-N001")
    newcomer = make_student(access_id="OLD-ID")
    draws.extend(["TAKE-N001", "FREE-2345"])

    issued = issue(newcomer, new_id=True)

    assert issued.access_id == "FREE-2345"


def test_when_every_draw_is_taken_nothing_is_issued(make_student, draws):
    make_student(access_id="TAKE-N001")
    newcomer = make_student(access_id="OLD-ID")
    draws.extend(["TAKE-N001"] * credentials.ACCESS_ID_DRAWS)

    with pytest.raises(credentials.AccessIdsExhausted):
        services().access_issuer().issue(newcomer, new_id=True)


# --- the district's single-use option ---------------------------------------------------------
def test_with_single_use_on_the_first_guardian_links_and_the_second_is_refused(zoe):
    single_use(True)
    service = registration_service()

    service.register(form(entry("ZR-1", "orchid-42")))
    second = refused(
        service, form(entry("ZR-1", "orchid-42"), username="sam.rivera", email="sam@example.org")
    )

    assert second.problems.rows[0].problem is Problem.ROW_ACCESS
    assert count(Account) == 1 and count(GuardianLink) == 1
    assert events("student_access.failed")[-1].details["reason"] == "spent"
    assert [e.details["student_id"] for e in events("student.access_spent")] == ["100234"]


def test_a_new_letter_after_a_spent_one_works_once_again(zoe):
    single_use(True)
    registration_service().register(form(entry("ZR-1", "orchid-42")))

    issued = issue(zoe)
    registration_service().register(
        form(entry("ZR-1", issued.access_password), username="sam.rivera", email="sam@example.org")
    )

    assert count(GuardianLink) == 2
    with pytest.raises(AccessDenied):
        check("ZR-1", issued.access_password)


def test_with_single_use_off_every_guardian_links_with_the_same_letter(zoe):
    service = registration_service()

    service.register(form(entry("ZR-1", "orchid-42")))
    service.register(form(entry("ZR-1", "orchid-42"), username="sam.rivera", email="sam@example.org"))

    assert count(GuardianLink) == 2
    db.session.refresh(zoe)
    assert zoe.access_password_used_at is None


def test_turning_single_use_off_lets_a_spent_password_work_again(zoe):
    single_use(True)
    registration_service().register(form(entry("ZR-1", "orchid-42")))

    single_use(False)

    assert check("ZR-1", "orchid-42").id == zoe.id


def test_of_two_guardians_checked_at_once_only_one_spends_the_password(zoe, make_account):
    single_use(True)
    first, second = make_account(), make_account()
    checked = check("ZR-1", "orchid-42")  # both passed the check before either linked
    guardianship = services().guardianship()

    guardianship.link_by_access(first, checked, "Mother")
    with pytest.raises(AccessSpent):
        guardianship.link_by_access(second, checked, "Father")

    db.session.commit()
    assert count(GuardianLink) == 1


def test_a_link_made_by_staff_does_not_spend_the_password(zoe, make_account):
    single_use(True)
    services().guardianship().link(make_account(), zoe, "Mother")
    db.session.commit()

    assert check("ZR-1", "orchid-42").id == zoe.id
