"""The console's account actions and student profile, as services: effects, audit, mail and reach."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from idp.accounts.models import Account, AccountStatus, AccountType
from idp.accounts.service import SignInContext
from idp.admin.accounts import (
    AccountState,
    InvalidReason,
    NotPending,
    StaffAccounts,
    StudentNotLinked,
    TooManyStudents,
    UnchangeableType,
)
from idp.admin.actor import Actor, NotPermitted, OutOfReach
from idp.admin.models import StaffRole
from idp.admin.students import StudentProfiles
from idp.audit import AuditEvent
from idp.clock import FrozenClock
from idp.extensions import db
from idp.mail.delivery import SMTPTransport, deliver_due
from idp.mail.models import OutboundEmail
from idp.oauth.models import RefreshTokenFamily
from idp.students.models import GuardianLink, Student
from idp.web.context import services
from tests.receiver import Receiver
from tests.smtp import smtp_server, text_of

DISTRICT = Actor.staff("staff-district", StaffRole.DISTRICT_ADMIN)
HELP_DESK = Actor.staff("staff-helpdesk", StaffRole.HELP_DESK)


def staff_accounts() -> StaffAccounts:
    return services().staff_accounts()


def events(name: str) -> list[AuditEvent]:
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.name == name)).scalars())


def mails(purpose: str) -> list[OutboundEmail]:
    return list(db.session.execute(select(OutboundEmail).where(OutboundEmail.purpose == purpose)).scalars())


@dataclass
class District:
    """Dana (parent of Zoe at LES and of Max at HHS), Ben (parent of Ava at HHS only), Ava's own account."""

    dana: Account
    ben: Account
    ava_account: Account
    zoe: Student
    max: Student
    ava: Student

    def school_admin(self, *students: Student) -> Actor:
        return Actor.staff("staff-school", StaffRole.SCHOOL_ADMIN, frozenset(s.school_id for s in students))


@pytest.fixture
def district(make_account: Callable[..., Account], make_student: Callable[..., Student]) -> District:
    guardianship = services().guardianship()
    zoe = make_student(sis_id="100234", first_name="Zoe", last_name="Rivera", school_code="LES")
    max_ = make_student(sis_id="100235", first_name="Max", last_name="Rivera", school_code="HHS")
    ava = make_student(sis_id="200001", first_name="Ava", last_name="Stone", school_code="HHS")
    dana = make_account(
        username="dana.rivera", email="dana@example.org", first_name="Dana", last_name="Rivera"
    )
    ben = make_account(username="ben.stone", email="ben@example.org", first_name="Ben", last_name="Stone")
    ava_account = make_account(
        username="ava.stone", email="ava@example.org", first_name="Ava", account_type=AccountType.STUDENT
    )
    guardianship.link(dana, zoe, "Mother")
    guardianship.link(dana, max_, "Mother")
    guardianship.link(ben, ava, "Father")
    guardianship.link(ava_account, ava, "Self")
    db.session.commit()
    return District(dana, ben, ava_account, zoe, max_, ava)


def test_the_account_page_shows_students_signins_sessions_grants_and_audit(
    district: District, make_client: Callable[..., Any], clock: FrozenClock
):
    built = services()
    portal = make_client(name="Lincoln Portal")
    context = SignInContext(ip_address="203.0.113.9", user_agent="Firefox", client_id=portal.client_id)
    built.accounts().record_signin(district.dana, context)
    started = built.sessions().start(district.dana, ip_address="203.0.113.9", user_agent="Firefox")
    built.sessions().remember_client(started.id, portal.client_id)
    now = clock.now()
    db.session.add(
        RefreshTokenFamily(
            client_id=portal.client_id,
            account_id=district.dana.id,
            scope="openid students offline_access",
            auth_time=now,
            created_at=now,
            expires_at=now + timedelta(days=30),
        )
    )
    db.session.commit()

    view = staff_accounts().account(DISTRICT, district.dana.id)

    assert view.state is AccountState.ACTIVE
    assert [(s.sis_id, s.relationship, s.school_code, s.is_primary) for s in view.students] == [
        ("100235", "Mother", "HHS", False),
        ("100234", "Mother", "LES", True),
    ]
    (signin,) = view.signins
    assert (signin.outcome, signin.ip_address, signin.client_id, signin.user_agent) == (
        "succeeded",
        "203.0.113.9",
        portal.client_id,
        "Firefox",
    )
    assert view.last_login_at == now and view.last_login_ip == "203.0.113.9"
    assert [(s.ip_address, s.user_agent, s.client_ids) for s in view.sessions] == [
        ("203.0.113.9", "Firefox", (portal.client_id,))
    ]
    assert [(g.client_name, g.scope) for g in view.grants] == [
        ("Lincoln Portal", "openid students offline_access")
    ]
    assert {"signin.succeeded", "guardian_link.created"} <= {e.name for e in view.events}


def test_a_locked_username_shows_as_locked_and_unlock_lifts_it(district: District):
    lockout = services().lockout
    key = lockout.user_key(district.dana.username)
    for _ in range(lockout.policy.threshold):
        lockout.begin(key)
    assert staff_accounts().account(HELP_DESK, district.dana.id).state is AccountState.LOCKED

    assert staff_accounts().unlock(HELP_DESK, district.dana.id) is True

    assert staff_accounts().account(HELP_DESK, district.dana.id).state is AccountState.ACTIVE
    (event,) = events("account.unlocked")
    assert event.details == {"actor": "staff:staff-helpdesk", "was_locked": True}
    assert staff_accounts().unlock(HELP_DESK, district.dana.id) is False


def test_unlinking_a_student_mails_the_account_and_the_claims_drop_the_student(district: District):
    staff_accounts().unlink_student(DISTRICT, district.dana.id, district.zoe.sis_id)

    links = db.session.execute(select(GuardianLink).where(GuardianLink.account_id == district.dana.id))
    assert [link.student_id for link in links.scalars()] == [district.max.id]
    dana = db.session.get(Account, district.dana.id)
    assert dana is not None and dana.primary_student_id == district.max.id
    claims = services().claims().for_scope(dana, "openid students")
    assert claims["student_ids"] == ["100235"] and claims["primary_student_id"] == "100235"
    (mail,) = mails("student_removed")
    assert (mail.to_address, mail.subject) == ("dana@example.org", "A student was removed from your account")
    assert "Zoe has been removed from your school sign-in account dana.rivera by School District." in (
        mail.body_text
    )
    (event,) = events("guardian_link.removed")
    assert event.account_id == district.dana.id
    assert event.details["actor"] == "staff:staff-district" and event.details["student_id"] == "100234"


def test_a_school_admin_unlinks_only_the_students_of_their_schools(district: District):
    les_admin = district.school_admin(district.zoe)

    with pytest.raises(StudentNotLinked):
        staff_accounts().unlink_student(les_admin, district.dana.id, district.max.sis_id)
    with pytest.raises(StudentNotLinked):
        staff_accounts().unlink_student(les_admin, district.dana.id, "no-such-student")
    staff_accounts().unlink_student(les_admin, district.dana.id, district.zoe.sis_id)

    # Dana now links HHS's Max only: out of the LES admin's reach.
    with pytest.raises(OutOfReach):
        staff_accounts().account(les_admin, district.dana.id)


def test_deleting_an_account_mails_signs_out_tells_portals_and_leaves_a_tombstone(
    district: District, make_client: Callable[..., Any], receiver: Receiver
):
    built = services()
    portal = make_client(backchannel_logout_uri=receiver.url)
    started = built.sessions().start(district.dana, ip_address="203.0.113.9", user_agent="Firefox")
    built.sessions().remember_client(started.id, portal.client_id)
    db.session.commit()
    dana_id = district.dana.id

    deleted = staff_accounts().delete_account(DISTRICT, dana_id, "Duplicate account")

    assert (deleted.ended_sessions, deleted.unlinked_students, deleted.notified) == (1, 2, True)
    assert db.session.get(Account, dana_id) is None
    assert receiver.wait_for(1)[0].form["logout_token"]
    (mail,) = mails("account_deleted")
    assert (mail.to_address, mail.account_id, mail.subject) == (
        "dana@example.org",
        None,
        "Your account has been removed",
    )
    assert "dana.rivera" in mail.body_text
    (tombstone,) = events("account.deleted")
    assert tombstone.account_id is None
    assert tombstone.details == {
        "actor": "staff:staff-district",
        "deleted_account_id": dana_id,
        "account_type": "parent",
        "reason": "Duplicate account",
        "ended_sessions": 1,
        "revoked_grants": 0,
        "unlinked_students": 2,
        "was_test_account": False,
    }
    (told,) = events("backchannel_logout.delivered")
    assert told.account_id is None and told.details["sid"] == started.sid


def test_the_deletion_mail_reaches_a_real_smtp_server(district: District, clock: FrozenClock):
    staff_accounts().delete_account(DISTRICT, district.ben.id, "Left the district")

    with smtp_server() as (inbox, port):
        sent, failed = deliver_due(
            db.session, SMTPTransport(f"smtp://127.0.0.1:{port}"), sender="idp@example.org", clock=clock
        )
    assert (sent, failed) == (1, 0)
    (message,) = inbox.to("ben@example.org")
    assert message["Subject"] == "Your account has been removed"
    assert "Your account has been removed: School District has deleted" in text_of(message)


def test_a_reason_is_required_to_delete_or_disable(district: District):
    for reason in ("", "   ", "x" * 201, "line\nbreak"):
        with pytest.raises(InvalidReason):
            staff_accounts().delete_account(DISTRICT, district.dana.id, reason)
        with pytest.raises(InvalidReason):
            staff_accounts().disable(DISTRICT, district.dana.id, reason)
    assert db.session.get(Account, district.dana.id) is not None and mails("account_deleted") == []


def test_disable_enable_expiry_and_test_mark_are_audited_with_the_actor(
    district: District, clock: FrozenClock
):
    accounts = staff_accounts()
    admin = district.school_admin(district.ava)

    accounts.disable(admin, district.ben.id, "Custody order")
    assert accounts.account(admin, district.ben.id).state is AccountState.DISABLED
    assert accounts.enable(admin, district.ben.id) is True
    accounts.set_expiry(admin, district.ben.id, clock.now() - timedelta(minutes=1))
    assert accounts.account(admin, district.ben.id).state is AccountState.EXPIRED
    accounts.set_expiry(admin, district.ben.id, None)
    assert accounts.mark_test(admin, district.ben.id, True) is True
    marked = accounts.account(admin, district.ben.id)
    assert marked.is_test_account and marked.state is AccountState.ACTIVE  # a mark beside the state
    assert accounts.mark_test(admin, district.ben.id, True) is False

    named = {
        name: [e.details["actor"] for e in events(name)]
        for name in ("account.disabled", "account.enabled", "account.expiry_set", "account.test_marked")
    }
    assert named == {
        "account.disabled": ["staff:staff-school"],
        "account.enabled": ["staff:staff-school"],
        "account.expiry_set": ["staff:staff-school", "staff:staff-school"],
        "account.test_marked": ["staff:staff-school"],
    }


def test_a_test_account_gets_no_mail(district: District):
    staff_accounts().mark_test(DISTRICT, district.dana.id, True)

    staff_accounts().unlink_student(DISTRICT, district.dana.id, district.zoe.sis_id)
    staff_accounts().delete_account(DISTRICT, district.dana.id, "Test account")

    assert db.session.execute(select(OutboundEmail)).first() is None
    (tombstone,) = events("account.deleted")
    assert tombstone.details["was_test_account"] is True


def test_a_temporary_password_is_generated_and_must_be_changed(district: District):
    temporary = staff_accounts().set_temporary_password(HELP_DESK, district.dana.id)

    dana = db.session.get(Account, district.dana.id)
    assert dana is not None and dana.must_change_password
    assert services().hasher.verify(dana.password_hash, temporary.password)
    (event,) = events("password.set_temporary")
    assert event.details["actor"] == "staff:staff-helpdesk" and event.details["generated"] is True


def test_verification_mail_is_resent_to_pending_accounts_only(
    district: District, make_account: Callable[..., Account]
):
    pending = make_account(username="new.parent", status=AccountStatus.PENDING)

    assert staff_accounts().resend_verification(HELP_DESK, pending.id) is True
    with pytest.raises(NotPending):
        staff_accounts().resend_verification(HELP_DESK, district.dana.id)

    (mail,) = mails("email_verification")
    assert mail.account_id == pending.id
    (event,) = events("email_verification.sent")
    assert event.details == {"actor": "staff:staff-helpdesk"}


def test_changing_the_type_relabels_the_links(district: District):
    accounts = staff_accounts()

    assert accounts.change_type(
        DISTRICT, district.ava_account.id, AccountType.PARENT, relationship="guardian"
    )
    ava = db.session.get(Account, district.ava_account.id)
    assert ava is not None and ava.type is AccountType.PARENT
    assert services().claims().for_scope(ava, "students")["students"][0]["relationship"] == "Guardian"
    assert accounts.change_type(DISTRICT, district.ava_account.id, AccountType.STUDENT)
    assert services().claims().for_scope(ava, "students")["students"][0]["relationship"] == "Self"
    with pytest.raises(TooManyStudents):
        accounts.change_type(DISTRICT, district.dana.id, AccountType.STUDENT)
    for refused in (AccountType.STAFF, "admin"):
        with pytest.raises(UnchangeableType):
            accounts.change_type(DISTRICT, district.dana.id, refused)  # type: ignore[arg-type]

    assert [(e.details["previous"], e.details["type"]) for e in events("account.type_changed")] == [
        ("student", "parent"),
        ("parent", "student"),
    ]


def every_action(accounts: StaffAccounts, district: District) -> dict[str, Callable[[Actor, str], object]]:
    sis_id = district.ava.sis_id
    return {
        "account": accounts.account,
        "unlink_student": lambda actor, id: accounts.unlink_student(actor, id, sis_id),
        "delete_account": lambda actor, id: accounts.delete_account(actor, id, "reason"),
        "disable": lambda actor, id: accounts.disable(actor, id, "reason"),
        "enable": accounts.enable,
        "set_expiry": lambda actor, id: accounts.set_expiry(actor, id, None),
        "set_temporary_password": accounts.set_temporary_password,
        "unlock": accounts.unlock,
        "resend_verification": accounts.resend_verification,
        "change_type": lambda actor, id: accounts.change_type(actor, id, AccountType.STUDENT),
        "mark_test": lambda actor, id: accounts.mark_test(actor, id, True),
    }


def test_every_action_is_out_of_reach_for_another_schools_staff_accounts_and_unknown_ids(
    district: District, make_account: Callable[..., Account]
):
    staff = make_account(username="staffer", account_type=AccountType.STAFF)
    les_admin = district.school_admin(district.zoe)
    unreachable = [
        (les_admin, district.ben.id),  # Ben links HHS's Ava only
        (DISTRICT, staff.id),
        (DISTRICT, "0" * 32),
        (DISTRICT, "\x00"),
        (DISTRICT, "x" * 10_000),
    ]

    for action in every_action(staff_accounts(), district).values():
        for actor, account_id in unreachable:
            with pytest.raises(OutOfReach):
                action(actor, account_id)

    assert db.session.get(Account, district.ben.id) is not None
    assert db.session.execute(select(OutboundEmail)).first() is None


def test_help_desk_may_not_manage_accounts(district: District):
    helpdesk_may = {"account", "set_temporary_password", "unlock", "resend_verification"}

    for name, action in every_action(staff_accounts(), district).items():
        if name in helpdesk_may:
            continue
        with pytest.raises(NotPermitted):
            action(HELP_DESK, district.ben.id)

    ben = db.session.get(Account, district.ben.id)
    assert ben is not None and ben.status is AccountStatus.CONFIRMED and not ben.is_test_account


def test_the_student_profile_lists_linked_accounts_within_reach(district: District, clock: FrozenClock):
    services().accounts().record_signin(district.ben, SignInContext(ip_address="198.51.100.7"))
    db.session.commit()
    profiles: StudentProfiles = services().student_profiles()

    profile = profiles.student_profile(district.school_admin(district.ava), district.ava.sis_id)

    assert (profile.first_name, profile.school_code) == ("Ava", "HHS")
    assert [(a.username, a.type, a.relationship, a.state, a.last_login_at) for a in profile.accounts] == [
        ("ben.stone", AccountType.PARENT, "Father", AccountState.ACTIVE, clock.now()),
        ("ava.stone", AccountType.STUDENT, "Self", AccountState.ACTIVE, None),
    ]
    with pytest.raises(OutOfReach):
        profiles.student_profile(district.school_admin(district.zoe), district.ava.sis_id)
    with pytest.raises(OutOfReach):
        profiles.student_profile(DISTRICT, "no-such-student")
