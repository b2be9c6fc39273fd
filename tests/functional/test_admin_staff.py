"""District admins manage staff in the console: the list, a change of role, an authenticator reset."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy import func, select

from idp.accounts.models import Account
from idp.accounts.service import SignInContext
from idp.admin.models import BackupCode, StaffMember, StaffRole, StaffSchool, StaffSession
from idp.audit import AuditEvent
from idp.extensions import db
from idp.web.context import services
from tests.admin_fixtures import STAFF_PASSWORD, csrf_of

StaffClient = Callable[..., tuple[FlaskClient, Account]]


def signed_in(account: Account) -> None:
    """Open a console session for ``account`` (its password given), as its own browser would."""
    services().staff().sign_in(account.username, STAFF_PASSWORD, SignInContext())
    db.session.commit()
    assert consoles_of(account)


def consoles_of(account: Account) -> list[StaffSession]:
    db.session.expire_all()
    return list(
        db.session.execute(select(StaffSession).where(StaffSession.account_id == account.id)).scalars()
    )


def events(name: str) -> list[AuditEvent]:
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.name == name)).scalars())


def test_a_district_admin_changes_a_role_and_the_member_signs_in_again(
    staff_client: StaffClient, make_staff: Callable[..., Account]
) -> None:
    admin, me = staff_client("district-admin")
    helper_account = make_staff("help-desk")
    signed_in(helper_account)
    page = admin.get("/admin/staff")
    assert page.status_code == 200
    assert helper_account.username in page.text and "Help desk" in page.text

    # No CSRF token: nothing changes.
    refused = admin.post(f"/admin/staff/{helper_account.id}/role", data={"role": "school-admin"})
    assert refused.status_code == 400
    # A school admin needs a school, and a known one.
    token = csrf_of(page.text)
    for schools in ("", "NOPE"):
        answer = admin.post(
            f"/admin/staff/{helper_account.id}/role",
            data={"role": "school-admin", "schools": schools, "csrf_token": token},
        )
        assert answer.status_code == 400
    assert db.session.get(StaffMember, helper_account.id).role is StaffRole.HELP_DESK  # type: ignore[union-attr]

    make_staff("school-admin", ["LES"])  # makes sure school LES exists
    answer = admin.post(
        f"/admin/staff/{helper_account.id}/role",
        data={"role": "school-admin", "schools": "LES", "csrf_token": token},
    )
    assert answer.status_code == 303
    db.session.expire_all()
    member = db.session.get(StaffMember, helper_account.id)
    assert member is not None and member.role is StaffRole.SCHOOL_ADMIN
    assert (
        db.session.execute(
            select(func.count()).select_from(StaffSchool).where(StaffSchool.account_id == helper_account.id)
        ).scalar_one()
        == 1
    )
    (changed,) = events("staff.role_changed")
    assert changed.details["actor"] == f"staff:{me.id}" and changed.details["role"] == "school-admin"
    # The member's console session ended: the next page asks for a sign-in.
    assert not consoles_of(helper_account)
    # Nobody changes their own role.
    own = admin.post(f"/admin/staff/{me.id}/role", data={"role": "help-desk", "csrf_token": token})
    assert own.status_code == 400


def test_an_authenticator_reset_forgets_the_secret_and_the_backup_codes(
    staff_client: StaffClient, make_staff: Callable[..., Account]
) -> None:
    admin, _ = staff_client("district-admin")
    other = make_staff("district-admin")
    signed_in(other)
    db.session.add(BackupCode(account_id=other.id, code_hash="0" * 64))
    db.session.commit()
    token = csrf_of(admin.get("/admin/staff").text)

    answer = admin.post(f"/admin/staff/{other.id}/reset-second-factor", data={"csrf_token": token})

    assert answer.status_code == 303
    db.session.expire_all()
    member = db.session.get(StaffMember, other.id)
    assert member is not None and member.totp_secret is None and member.totp_confirmed_at is None
    assert db.session.execute(select(BackupCode).where(BackupCode.account_id == other.id)).first() is None
    assert not consoles_of(other)
    assert len(events("staff.second_factor_reset")) == 1


def test_a_help_desk_may_not_manage_staff(staff_client: StaffClient) -> None:
    client, _ = staff_client("help-desk")
    assert client.get("/admin/staff").status_code == 403
