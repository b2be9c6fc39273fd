"""Emulating a parent, without HTTP: reach, reason, the session it opens, its end, mail and audit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from idp.accounts.models import Account, AccountType, OPSession
from idp.accounts.sessions import StartedSession
from idp.admin.actor import Actor, NotPermitted, OutOfReach
from idp.admin.emulation import ReasonRefused
from idp.admin.models import StaffRole
from idp.audit import AuditEvent
from idp.clock import FrozenClock
from idp.extensions import db
from idp.mail.models import OutboundEmail
from idp.students.models import Student
from idp.web.context import services
from tests.integration.helpers import audit_names, count

REASON = "Parent called: cannot see her son's grades"


@pytest.fixture
def staff(make_account: Callable[..., Account]) -> Account:
    return make_account(account_type=AccountType.STAFF, first_name="Dana", last_name="Admin")


def start(actor: Actor, account: Account, reason: str = REASON) -> StartedSession:
    return services().emulation().start(actor, account.id, reason, staff_session_ip=None, user_agent=None)


def district_admin(staff: Account) -> Actor:
    return Actor.staff(staff.id, StaffRole.DISTRICT_ADMIN)


def linked_parent(
    make_account: Callable[..., Account], make_student: Callable[..., Student], school_code: str
) -> tuple[Account, Student]:
    parent = make_account()
    student = make_student(school_code=school_code)
    services().guardianship().link(parent, student, "Mother")
    db.session.commit()
    return parent, student


def test_start_opens_an_emulated_session_that_is_no_sign_in(
    staff: Account, make_account: Callable[..., Account], clock: FrozenClock
) -> None:
    parent = make_account()
    logins = parent.login_count
    emulation = services().emulation()
    started = emulation.start(
        district_admin(staff), parent.id, f" {REASON} ", staff_session_ip="10.0.0.9", user_agent="Firefox"
    )

    row = services().sessions().find(started.cookie_value)
    assert row is not None and row.account_id == parent.id
    assert (row.emulated_by, row.emulation_reason) == (staff.id, REASON)
    assert row.emulation_ends_at == clock.now() + timedelta(seconds=1800)
    assert parent.login_count == logins and parent.last_login_at is None
    event = db.session.execute(select(AuditEvent).where(AuditEvent.name == "emulation.started")).scalar_one()
    assert event.account_id == parent.id
    assert (event.details["actor"], event.details["reason"]) == (f"staff:{staff.id}", REASON)
    mail = db.session.execute(select(OutboundEmail)).scalar_one()
    assert (mail.to_address, mail.purpose) == (parent.email, "emulation_started")
    assert "Dana Admin" in mail.body_text and REASON in mail.body_text


def test_the_session_ends_at_the_emulations_end(
    staff: Account, make_account: Callable[..., Account], clock: FrozenClock
) -> None:
    parent = make_account()
    started = start(district_admin(staff), parent)
    clock.advance(timedelta(minutes=29, seconds=59))
    services().sessions().find(started.cookie_value)  # seen: the idle timeout is not what ends it
    clock.advance(timedelta(seconds=1))

    assert services().sessions().find(started.cookie_value) is None
    ended = services().sessions().end_timed_out()
    assert [gone.sid for gone in ended] == [started.sid]


def test_school_admin_reaches_only_parents_of_their_schools_and_never_staff(
    staff: Account,
    make_account: Callable[..., Account],
    make_student: Callable[..., Student],
) -> None:
    ours, student = linked_parent(make_account, make_student, "LES")
    theirs, _ = linked_parent(make_account, make_student, "OTHER")
    admin = Actor.staff(staff.id, StaffRole.SCHOOL_ADMIN, frozenset({student.school_id}))
    other_staff = make_account(account_type=AccountType.STAFF)

    start(admin, ours)
    with pytest.raises(OutOfReach):
        start(admin, theirs)
    with pytest.raises(OutOfReach):
        start(district_admin(staff), other_staff)
    with pytest.raises(NotPermitted):
        start(Actor.staff(staff.id, StaffRole.HELP_DESK), ours)
    assert count(OPSession) == 1


@pytest.mark.parametrize(
    ("reason", "problem"),
    [("   ", "missing"), ("x" * 201, "too_long"), ("look\x07here", "unprintable")],
)
def test_a_reason_is_required(
    staff: Account, make_account: Callable[..., Account], reason: str, problem: str
) -> None:
    parent = make_account()
    with pytest.raises(ReasonRefused) as refused:
        start(district_admin(staff), parent, reason)
    assert refused.value.problem == problem
    assert (count(OPSession), count(OutboundEmail)) == (0, 0)
    assert "emulation.started" not in audit_names()


def test_end_signs_the_emulated_session_out_and_leaves_a_parents_own_alone(
    staff: Account, make_account: Callable[..., Account]
) -> None:
    parent = make_account()
    own = services().sessions().start(parent, ip_address=None, user_agent=None)
    started = start(district_admin(staff), parent)

    assert services().emulation().end(own.cookie_value) is None
    ended = services().emulation().end(started.cookie_value)

    assert ended is not None and (ended.account_id, ended.staff_id) == (parent.id, staff.id)
    assert services().sessions().find(started.cookie_value) is None
    assert services().sessions().find(own.cookie_value) is not None
    event = db.session.execute(select(AuditEvent).where(AuditEvent.name == "emulation.ended")).scalar_one()
    assert event.details["actor"] == f"staff:{staff.id}"


def test_a_second_emulation_in_the_browser_ends_the_first(
    staff: Account, make_account: Callable[..., Account]
) -> None:
    first = start(district_admin(staff), make_account())
    second = (
        services()
        .emulation()
        .start(
            district_admin(staff),
            make_account().id,
            REASON,
            staff_session_ip=None,
            user_agent=None,
            replacing=first.cookie_value,
        )
    )

    assert services().sessions().find(first.cookie_value) is None
    assert services().sessions().find(second.cookie_value) is not None
    assert audit_names().count("emulation.ended") == 1
