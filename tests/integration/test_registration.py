"""Registration, Access ID checks and their throttles, verification and linking, on the real databases."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from flask import current_app
from sqlalchemy import select

from idp.accounts.district import DistrictOptions
from idp.accounts.models import Account, AccountStatus
from idp.accounts.password_policy import PasswordPolicyService, Violation
from idp.accounts.registration import (
    Problem,
    Registration,
    RegistrationRefused,
    RegistrationService,
    StudentEntry,
)
from idp.accounts.verification import (
    EmailVerification,
    InvalidVerificationLink,
    TooManyVerificationMails,
    VerificationLinkExpired,
)
from idp.audit import AuditEvent
from idp.clock import FrozenClock
from idp.counters.memory import MemoryCounters
from idp.counters.store import CounterStore
from idp.extensions import db
from idp.mail.compose import TemplateComposer
from idp.mail.models import OutboundEmail
from idp.mail.outbox import Outbox
from idp.policy import AccessPolicy
from idp.students.access import AccessDenied, StudentAccess
from idp.students.models import GuardianLink, Student
from idp.web.context import services
from tests.integration.helpers import count

PASSWORD = "lantern-orchard-velvet-93"


def verification_service() -> EmailVerification:
    rt = services()
    return EmailVerification(
        db.session,
        secret_key=current_app.config["SECRET_KEY"],
        clock=rt.clock,
        outbox=Outbox(db.session, clock=rt.clock),
        composer=TemplateComposer(),
        link=lambda token: f"http://localhost/verify/{token}",
    )


def access_service(counters: CounterStore | None = None, **settings: Any) -> StudentAccess:
    """The app's Access ID checks, on ``counters`` (the app's Redis counters by default)."""
    rt = services()
    return StudentAccess(
        db.session,
        hasher=rt.hasher,
        counters=rt.counters.store if counters is None else counters,
        keys=rt.counters.keys,
        policy=AccessPolicy.from_settings(replace(rt.settings, **settings)),
        single_use=lambda: rt.district_options().current().single_use_access_passwords,
    )


def memory_counters() -> MemoryCounters:
    """Counters of this test alone, on the app's frozen clock."""
    return MemoryCounters(services().clock)


def registration_service(
    access: StudentAccess | None = None, options: DistrictOptions | None = None
) -> RegistrationService:
    rt = services()
    return RegistrationService(
        db.session,
        accounts=rt.accounts(),
        guardianship=rt.guardianship(),
        access=access or access_service(),
        policies=PasswordPolicyService(db.session, hasher=rt.hasher, clock=rt.clock),
        verification=verification_service(),
        options=options or DistrictOptions(name="Springfield Public Schools"),
    )


def form(*students: StudentEntry, **fields: str) -> Registration:
    values: dict[str, Any] = {
        "first_name": "Dana",
        "last_name": "Rivera",
        "email": "dana@example.org",
        "username": "dana.rivera",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        "ip_address": "203.0.113.7",
    }
    values.update(fields)
    return Registration(students=students, **values)


def entry(access_id: str, access_password: str, relationship: str = "Mother", name: str = "") -> StudentEntry:
    return StudentEntry(
        name=name, access_id=access_id, access_password=access_password, relationship=relationship
    )


def refused(service: RegistrationService, registration: Registration) -> RegistrationRefused:
    with pytest.raises(RegistrationRefused) as caught:
        service.register(registration)
    db.session.commit()  # what a view does: the audit events stay
    return caught.value


@pytest.fixture
def zoe(make_student: Callable[..., Student]) -> Student:
    return make_student(
        sis_id="100234", first_name="Zoe", last_name="Rivera", access_id="ZR-1", access_password="orchid-42"
    )


@pytest.fixture
def adam(make_student: Callable[..., Student]) -> Student:
    return make_student(
        sis_id="100235",
        first_name="Adam",
        last_name="Rivera",
        school_code="WMS",
        access_id="AR-2",
        access_password="comet-17",
    )


def test_registration_creates_a_pending_account_linked_to_both_students(zoe, adam):
    account = registration_service().register(
        form(entry("ZR-1", "orchid-42", name="Zoey R"), entry("AR-2", "comet-17", "father"))
    )
    db.session.commit()

    assert account.status is AccountStatus.PENDING
    assert account.email_verified_at is None
    linked = services().guardianship().linked_students(account)
    # The names come from the records, whatever was typed.
    assert [(s.first_name, s.last_name, r) for s, r in linked] == [
        ("Adam", "Rivera", "Father"),
        ("Zoe", "Rivera", "Mother"),
    ]
    assert account.primary_student_id == zoe.id  # the first student linked
    assert services().hasher.verify(account.password_hash, PASSWORD)


def test_registration_queues_a_verification_link_that_confirms_the_account(zoe):
    account = registration_service().register(form(entry("ZR-1", "orchid-42")))
    db.session.commit()
    (mail,) = db.session.execute(select(OutboundEmail)).scalars()
    assert (mail.to_address, mail.purpose, mail.account_id) == (
        "dana@example.org",
        "email_verification",
        account.id,
    )
    token = mail.body_text.split("http://localhost/verify/", 1)[1].split()[0]

    verified = verification_service().verify(token)
    db.session.commit()

    assert verified.id == account.id
    assert verified.status is AccountStatus.CONFIRMED
    assert verified.email_verified_at is not None


def test_verification_link_dies_when_the_address_changes(zoe):
    account = registration_service().register(form(entry("ZR-1", "orchid-42")))
    token = verification_service().token_for(account)
    account.email = "other@example.org"
    db.session.commit()

    with pytest.raises(InvalidVerificationLink):
        verification_service().verify(token)


def test_verification_link_expires_after_three_days(zoe, clock: FrozenClock):
    account = registration_service().register(form(entry("ZR-1", "orchid-42")))
    token = verification_service().token_for(account)
    db.session.commit()
    clock.advance(timedelta(days=3, seconds=1))

    with pytest.raises(VerificationLinkExpired):
        verification_service().verify(token)


@pytest.mark.parametrize("token", ["", "garbage", "a" * 2000, "WyJ4Il0.AAAA.BBBB"])
def test_tampered_verification_links_are_invalid(app, token):
    with pytest.raises(InvalidVerificationLink):
        verification_service().verify(token)


def test_resending_is_limited_per_account(zoe):
    account = registration_service().register(form(entry("ZR-1", "orchid-42")))
    service = verification_service()
    service.send(account, limit=True)
    service.send(account, limit=True)

    with pytest.raises(TooManyVerificationMails):
        service.send(account, limit=True)


@pytest.mark.parametrize(
    "typed",
    [entry("ZR-1", "wrong-password"), entry("NO-SUCH-ID", "orchid-42"), entry("zr-1 ", "orchid-42")],
    ids=["wrong password", "unknown Access ID", "Access ID with other case"],
)
def test_wrong_access_credentials_refuse_with_one_row_message_and_create_nothing(zoe, adam, typed):
    problem = refused(registration_service(), form(entry("AR-2", "comet-17"), typed))

    assert problem.problems.rows == {1: problem.problems.rows[1]}
    assert problem.problems.rows[1].problem is Problem.ROW_ACCESS
    assert count(Account) == 0 and count(GuardianLink) == 0
    events = db.session.execute(
        select(AuditEvent).where(AuditEvent.name == "student_access.failed")
    ).scalars()
    (event,) = events
    assert event.details["reason"] == "credentials"
    assert event.ip_address == "203.0.113.7"


class CountingHasher:
    """Wraps the app's hasher and counts the argon2 verifications it runs."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.verifies = 0

    def verify(self, stored: str, password: str) -> bool:
        self.verifies += 1
        return bool(self.inner.verify(stored, password))

    def verify_dummy(self, password: str) -> None:
        self.verifies += 1
        self.inner.verify_dummy(password)


@pytest.mark.parametrize("access_id", ["ZR-1", "NO-SUCH-ID", "x" * 10_000])
def test_unknown_access_id_costs_one_argon2_verification_like_a_wrong_password(zoe, access_id):
    access = access_service()
    hasher = CountingHasher(access.hasher)
    access.hasher = hasher  # type: ignore[assignment]

    with pytest.raises(AccessDenied):
        access.check(access_id, "wrong-password", ip_address="203.0.113.7")

    assert hasher.verifies == 1


def test_fifth_failure_pauses_the_access_id_even_for_the_right_password(zoe, clock: FrozenClock):
    service = registration_service(access_service(MemoryCounters(clock)))
    for _ in range(5):
        assert refused(service, form(entry("ZR-1", "guess"))).problems.rows[0].problem is Problem.ROW_ACCESS

    paused = refused(service, form(entry("ZR-1", "orchid-42"))).problems.rows[0]

    assert paused.problem is Problem.ROW_PAUSED
    assert paused.minutes == 15
    reasons = [
        e.details["reason"]
        for e in db.session.execute(
            select(AuditEvent).where(AuditEvent.name == "student_access.failed")
        ).scalars()
    ]
    assert sorted(reasons) == ["credentials"] * 5 + ["paused"]


def test_pause_is_bounded_then_the_family_can_link(zoe, clock: FrozenClock):
    service = registration_service(access_service(MemoryCounters(clock)))
    for _ in range(5):
        refused(service, form(entry("ZR-1", "guess")))
    clock.advance(timedelta(seconds=900))

    account = service.register(form(entry("ZR-1", "orchid-42")))

    assert services().guardianship().linked_students(account)[0][0].id == zoe.id


def test_unknown_access_ids_pause_alike_so_the_pause_reveals_nothing(app, clock: FrozenClock):
    service = registration_service(access_service(MemoryCounters(clock)))
    for _ in range(5):
        refused(service, form(entry("NO-SUCH-ID", "guess")))

    assert refused(service, form(entry("NO-SUCH-ID", "guess"))).problems.rows[0].problem is Problem.ROW_PAUSED


def test_access_id_pause_is_shared_through_redis(zoe):
    # Two services, as two processes would have, over the app's Redis store.
    first, second = registration_service(access_service()), registration_service(access_service())
    for attempt in range(5):
        refused(first if attempt % 2 else second, form(entry("ZR-1", "guess")))

    assert refused(first, form(entry("ZR-1", "orchid-42"))).problems.rows[0].problem is Problem.ROW_PAUSED


def test_right_password_resets_the_access_id_count(zoe, adam):
    service = registration_service(access_service(memory_counters()))
    for _ in range(4):
        refused(service, form(entry("ZR-1", "guess")))
    service.register(form(entry("ZR-1", "orchid-42")))
    db.session.commit()

    for _ in range(4):
        problems = refused(service, form(entry("ZR-1", "guess"), username="pat")).problems
        assert problems.rows[0].problem is Problem.ROW_ACCESS


def test_checks_from_one_ip_are_limited_whatever_the_access_id(zoe, adam):
    service = registration_service(access_service(memory_counters(), rate_limit_register="3/hour"))
    refused(service, form(entry("A-1", "x"), entry("A-2", "x"), entry("A-3", "x")))

    problems = refused(service, form(entry("ZR-1", "orchid-42"))).problems

    assert problems.rows[0].problem is Problem.ROW_RATE_LIMITED
    assert problems.rate_limited
    other_ip = refused(service, form(entry("A-4", "x"), ip_address="198.51.100.1")).problems
    assert other_ip.rows[0].problem is Problem.ROW_ACCESS


def test_at_least_one_student_is_required(app):
    problems = refused(registration_service(), form(entry("", "", ""), StudentEntry())).problems

    assert problems.fields["students"] == [Problem.NO_STUDENT]
    assert count(Account) == 0


def test_a_row_with_a_name_but_no_access_id_is_incomplete(zoe):
    problems = refused(
        registration_service(), form(entry("ZR-1", "orchid-42"), entry("", "", name="Max"))
    ).problems

    assert problems.rows[1].problem is Problem.ROW_INCOMPLETE
    assert count(Account) == 0


def test_relationship_must_be_one_of_the_districts(zoe):
    options = DistrictOptions(relationships=("Mother", "Aunt"))
    service = registration_service(options=options)

    assert refused(service, form(entry("ZR-1", "orchid-42", "Father"))).problems.rows[0].problem is (
        Problem.ROW_RELATIONSHIP
    )
    account = service.register(form(entry("ZR-1", "orchid-42", "aunt")))
    assert services().guardianship().linked_students(account)[0][1] == "Aunt"


def test_many_guardians_link_the_same_student_with_their_own_accounts(zoe, adam):
    service = registration_service()
    mother = service.register(form(entry("ZR-1", "orchid-42", "Mother")))
    father = service.register(
        form(
            entry("ZR-1", "orchid-42", "Father"),
            entry("AR-2", "comet-17", "Father"),
            username="sam",
            email="s@x.org",
        )
    )
    db.session.commit()

    guardianship = services().guardianship()
    assert [(s.first_name, r) for s, r in guardianship.linked_students(mother)] == [("Zoe", "Mother")]
    assert [(s.first_name, r) for s, r in guardianship.linked_students(father)] == [
        ("Adam", "Father"),
        ("Zoe", "Father"),
    ]


def test_every_problem_is_reported_at_once(app):
    problems = refused(
        registration_service(),
        form(
            entry("NOPE", "x"),
            first_name="",
            email="not an email",
            username="has space",
            password="short",
            password_confirm="other",
        ),
    ).problems

    assert problems.fields == {
        "first_name": [Problem.REQUIRED],
        "email": [Problem.EMAIL_INVALID],
        "username": [Problem.USERNAME_INVALID],
    }
    assert problems.password == [Violation.TOO_SHORT, Violation.MISMATCH]
    assert problems.rows[0].problem is Problem.ROW_ACCESS


def test_email_is_normalised_by_email_validator(zoe):
    account = registration_service().register(form(entry("ZR-1", "orchid-42"), email="Dana@EXAMPLE.org"))

    assert account.email == "Dana@example.org"


def test_the_strictest_school_policy_applies_at_registration(zoe, adam):
    policies = PasswordPolicyService(db.session, hasher=services().hasher, clock=services().clock)
    policies.set_policy("LES", min_length=8, require_upper_lower=True)
    policies.set_policy("WMS", min_length=10, require_special=True)
    db.session.commit()
    weak = "abcdefghij"  # fine for the district's default length? no: 10 < 15, but the schools say 8 and 10

    problems = refused(
        registration_service(),
        form(entry("ZR-1", "orchid-42"), entry("AR-2", "comet-17"), password=weak, password_confirm=weak),
    ).problems

    assert problems.password == [Violation.UPPER_LOWER, Violation.SPECIAL]
    assert problems.rules is not None and problems.rules.min_length == 10
    ok = "Abcdefgh!j"
    account = registration_service().register(
        form(entry("ZR-1", "orchid-42"), entry("AR-2", "comet-17"), password=ok, password_confirm=ok)
    )
    assert account.id


def test_a_school_without_its_own_policy_takes_the_districts(zoe, adam):
    policies = PasswordPolicyService(db.session, hasher=services().hasher, clock=services().clock)
    policies.set_policy("LES", min_length=8)
    db.session.commit()

    rules_les_only = policies.rules_for_schools([zoe.school_id])
    rules_both = policies.rules_for_schools([zoe.school_id, adam.school_id])

    assert rules_les_only.min_length == 8
    assert rules_both.min_length == 15


def test_the_password_may_not_be_made_from_the_username_or_district(zoe):
    password = "dana.rivera.2026"
    problems = refused(
        registration_service(), form(entry("ZR-1", "orchid-42"), password=password, password_confirm=password)
    ).problems

    assert problems.password == [Violation.CONTEXT]
