"""Staff sign-in on a real database: TOTP and backup codes, the lockout, idle console sessions,
and the wall between the console and the portals' sign-in."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pyotp
import pytest
from cryptography.exceptions import InvalidTag
from flask import Flask
from sqlalchemy import func, select

from idp.accounts.lockout import LockedOut
from idp.accounts.models import Account
from idp.accounts.service import InvalidCredentials, SignInContext
from idp.admin.models import BackupCode, StaffMember, StaffRole, StaffSchool
from idp.admin.staff import Console, StaffRefused, Step, WrongCode
from idp.admin.totp import STEP_SECONDS, TotpCipher
from idp.audit import AuditEvent
from idp.clock import FrozenClock
from idp.extensions import db
from idp.web.context import services
from tests.admin_fixtures import STAFF_PASSWORD, actor_of, totp_secret
from tests.conftest import PASSWORD

CONTEXT = SignInContext(ip_address="192.0.2.7", user_agent="test")


def events(name: str) -> int:
    return db.session.execute(select(func.count()).where(AuditEvent.name == name)).scalar_one()


def signed_in(account: Account) -> Console:
    """Sign in with the password: a console session awaiting its second factor."""
    return services().staff().sign_in(account.username, STAFF_PASSWORD, CONTEXT).console


def test_a_totp_code_completes_the_sign_in_once_and_its_replay_is_refused(
    app: Flask, make_staff: Callable[..., Account], clock: FrozenClock
) -> None:
    account = make_staff()
    staff = services().staff()
    console = signed_in(account)
    assert console.step is Step.CODE
    code = pyotp.TOTP(totp_secret(account)).at(clock.now())
    staff.verify_code(console, code, CONTEXT)
    assert staff.find_by_id(console.row.id).step is Step.READY
    assert events("staff.signed_in") == 1
    # The same code again, in another sign-in within its 30 seconds: refused.
    second = signed_in(account)
    with pytest.raises(WrongCode):
        staff.verify_code(second, code, CONTEXT)
    assert events("staff.second_factor_failed") == 1


def test_wrong_and_expired_codes_are_refused_and_the_next_step_is_accepted(
    app: Flask, make_staff: Callable[..., Account], clock: FrozenClock
) -> None:
    account = make_staff()
    totp = pyotp.TOTP(totp_secret(account))
    staff = services().staff()
    console = signed_in(account)
    expired = totp.at(clock.now() - timedelta(seconds=2 * STEP_SECONDS))
    wrong = f"{(int(totp.at(clock.now())) + 1) % 1_000_000:06d}"
    for code in (expired, wrong, "", "12345", "x" * 1000):
        with pytest.raises(WrongCode):
            staff.verify_code(console, code, CONTEXT)
    # One step either side is forgiven (a clock a little off).
    staff.verify_code(console, totp.at(clock.now() + timedelta(seconds=STEP_SECONDS)), CONTEXT)


def test_a_backup_code_works_once(app: Flask, make_staff: Callable[..., Account], clock: FrozenClock) -> None:
    account = make_staff(enrolled=False)
    staff = services().staff()
    console = staff.find_by_id(signed_in(account).row.id)
    assert console.step is Step.ENROL
    enrolment = staff.enrolment(console)
    codes = staff.confirm_enrolment(console, pyotp.TOTP(enrolment.secret).at(clock.now()), CONTEXT)
    assert len(codes) == len(set(codes)) == 10
    stored = db.session.execute(select(BackupCode.code_hash).where(BackupCode.account_id == account.id))
    assert not set(codes) & set(stored.scalars())  # hashes only
    member = db.session.get(StaffMember, account.id)
    assert member is not None and member.totp_secret is not None
    assert enrolment.secret not in member.totp_secret  # encrypted at rest
    with pytest.raises(InvalidTag):
        TotpCipher("another-secret-key-that-is-long-enough").decrypt(member.totp_secret)
    staff.verify_code(signed_in(account), codes[3].lower().replace("-", " "), CONTEXT)
    with pytest.raises(WrongCode):
        staff.verify_code(signed_in(account), codes[3], CONTEXT)
    assert events("staff.backup_code_used") == 1
    assert events("staff.totp_enrolled") == 1


def test_wrong_passwords_lock_the_staff_username_as_they_lock_a_parent(
    app: Flask, make_staff: Callable[..., Account]
) -> None:
    account = make_staff()
    staff = services().staff()
    threshold = services().settings.lockout_threshold
    for _ in range(threshold):
        with pytest.raises(InvalidCredentials):
            staff.sign_in(account.username, "wrong password", CONTEXT)
    with pytest.raises(LockedOut):
        staff.sign_in(account.username, STAFF_PASSWORD, CONTEXT)
    assert events("staff.signin_failed") == threshold + 1


def test_a_console_session_ends_after_fifteen_idle_minutes(
    app: Flask, make_staff: Callable[..., Account], clock: FrozenClock
) -> None:
    account = make_staff()
    staff = services().staff()
    started = staff.sign_in(account.username, STAFF_PASSWORD, CONTEXT)
    clock.advance(timedelta(seconds=services().settings.staff_idle_seconds - 1))
    assert staff.find(started.cookie_value) is not None
    clock.advance(timedelta(seconds=services().settings.staff_idle_seconds + 1))
    assert staff.find(started.cookie_value) is None


def test_parents_cannot_sign_in_to_the_console_nor_staff_to_portals(
    app: Flask, make_staff: Callable[..., Account], make_account: Callable[..., Account]
) -> None:
    parent = make_account()
    account = make_staff()
    with pytest.raises(InvalidCredentials):
        services().staff().sign_in(parent.username, PASSWORD, CONTEXT)
    with pytest.raises(InvalidCredentials):
        services().signin().sign_in(account.username, STAFF_PASSWORD, CONTEXT, browser_session=None)


@pytest.mark.parametrize(
    ("role", "schools", "message"),
    [
        ("school-admin", (), "at least one --school"),
        ("help-desk", ("LES",), "--school is for school admins"),
        ("school-admin", ("LES", "NOPE"), "unknown school code: NOPE"),
    ],
)
def test_staff_create_refuses_bad_schools_and_writes_nothing(
    app: Flask, role: str, schools: tuple[str, ...], message: str
) -> None:
    services().guardianship().school("LES")
    db.session.commit()
    with pytest.raises(StaffRefused, match=message):
        services().staff().create(
            username="s1",
            email="s1@example.org",
            first_name="S",
            last_name="One",
            role=role,
            school_codes=schools,
        )
    assert services().accounts().find_by_username("s1") is None


def test_a_school_admin_reaches_their_schools_and_must_change_the_generated_password(app: Flask) -> None:
    guardianship = services().guardianship()
    school = guardianship.school("LES")
    guardianship.school("MHS")
    db.session.commit()
    created = (
        services()
        .staff()
        .create(
            username="principal",
            email="p@example.org",
            first_name="Pat",
            last_name="Principal",
            role=StaffRole.SCHOOL_ADMIN,
            school_codes=["LES"],
        )
    )
    assert created.temporary_password and created.account.must_change_password
    rows = db.session.execute(
        select(StaffSchool.school_id).where(StaffSchool.account_id == created.account.id)
    )
    assert list(rows.scalars()) == [school.id]
    console = services().staff().sign_in("principal", created.temporary_password, CONTEXT).console
    assert console.step is Step.CHANGE_PASSWORD
    assert console.actor == actor_of(created.account)
    assert console.actor.school_ids == frozenset({school.id})
    assert events("staff.created") == 1


@pytest.mark.commits
def test_two_concurrent_uses_of_one_code_let_one_through(
    app: Flask, make_staff: Callable[..., Account], clock: FrozenClock
) -> None:
    account = make_staff()
    session_ids = [signed_in(account).row.id for _ in range(2)]
    code = pyotp.TOTP(totp_secret(account)).at(clock.now())
    db.session.remove()
    together = threading.Barrier(2)
    outcomes: list[str] = []

    def use(session_id: str) -> None:
        with app.app_context():
            staff = services().staff()
            console = staff.find_by_id(session_id)
            assert console is not None
            db.session.rollback()  # SQLite: no transaction held while the other thread starts its own
            together.wait()
            try:
                staff.verify_code(console, code, CONTEXT)
                outcomes.append("accepted")
            except WrongCode:
                outcomes.append("refused")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=use, args=(session_id,)) for session_id in session_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["accepted", "refused"]
