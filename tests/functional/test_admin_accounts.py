"""The console's account pages over HTTP: Manage Parent/Student Accounts, the account page and each
of its actions, the student profile and resetting every password. The rules themselves (reach,
roles, mails) are the services' tests (tests/integration/test_staff_accounts.py); these check that
the pages ask for them, word the outcome and refuse what they must."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.accounts.models import Account, AccountStatus, AccountType
from idp.admin.models import PasswordResetRun
from idp.admin.views import accounts as account_views
from idp.audit import AuditEvent
from idp.clock import FrozenClock
from idp.extensions import db
from idp.mail.models import OutboundEmail
from idp.students.models import GuardianLink, Student
from idp.web.context import services
from tests.admin_fixtures import csrf_of

StaffClient = Callable[..., tuple[FlaskClient, Account]]
MakeAccount = Callable[..., Account]
MakeStudent = Callable[..., Student]


def link(account: Account, student: Student, relationship: str = "Mother") -> None:
    services().guardianship().link(account, student, relationship)
    db.session.commit()


def poster(client: FlaskClient, page: str):  # type: ignore[no-untyped-def]
    """Return ``post(action, **fields)``, sending the CSRF token of ``page`` (one per session)."""
    shown = client.get(page)
    assert shown.status_code == 200, shown.text
    token = csrf_of(shown.text)
    return lambda action, **fields: client.post(action, data={**fields, "csrf_token": token})


def flashed(client: FlaskClient, answer) -> str:  # type: ignore[no-untyped-def]
    """Follow a 303 and return the page it leads to."""
    assert answer.status_code == 303, answer.text
    return client.get(answer.headers["Location"]).text


def result_ids(html: str) -> list[str]:
    return re.findall(r'<th scope="row"><a href="/admin/accounts/([0-9a-f]+)"', html)


def test_search_finds_by_student_id_number_and_filters_by_type_and_status(
    staff_client: StaffClient, make_account: MakeAccount, make_student: MakeStudent
) -> None:
    client, _ = staff_client()
    student = make_student(sis_id="778899", first_name="Ada")
    parent = make_account(email="mum@example.org")
    self_account = make_account(account_type=AccountType.STUDENT)
    link(parent, student)
    link(self_account, student)

    first = client.get("/admin/accounts")
    assert "Manage Parent/Student Accounts" in first.text and 'id="accounts"' not in first.text

    found = client.get("/admin/accounts?q=778899&type=&status=")
    assert found.status_code == 200
    assert sorted(result_ids(found.text)) == sorted([parent.id, self_account.id])
    assert 'href="/admin/students/778899"' in found.text and "<caption>" in found.text
    assert "Times are shown in the UTC time zone." in found.text

    parents = client.get("/admin/accounts?q=778899&type=parent")
    assert result_ids(parents.text) == [parent.id]
    assert result_ids(client.get("/admin/accounts?q=mum@example.org").text) == [parent.id]
    assert result_ids(client.get("/admin/accounts?q=778899&status=disabled").text) == []
    # LIKE's wildcards are literal: "%" and "_" match nobody here.
    for wildcard in ("%", "_", "%%%"):
        answer = client.get("/admin/accounts", query_string={"q": wildcard})
        assert answer.status_code == 200 and result_ids(answer.text) == []


def test_show_all_pages_through_every_account_with_next_links(
    staff_client: StaffClient, make_account: MakeAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = staff_client()
    made = {make_account().id for _ in range(3)}
    monkeypatch.setattr(account_views, "PAGE_SIZE", 2)
    page = client.get("/admin/accounts?all=1")
    seen = result_ids(page.text)
    next_link = re.search(r'href="([^"]+)" rel="next"', page.text)
    assert len(seen) == 2 and next_link is not None
    second = client.get(next_link.group(1).replace("&amp;", "&"))
    seen += result_ids(second.text)
    assert set(seen) == made and 'rel="next"' not in second.text and 'rel="first"' in second.text


def test_search_refuses_bad_input_with_a_400_and_says_why(staff_client: StaffClient) -> None:
    client, _ = staff_client()
    too_long = client.get("/admin/accounts", query_string={"q": "x" * 201})
    assert too_long.status_code == 400 and "at most 200 characters" in too_long.text
    assert client.get("/admin/accounts?status=sleeping").status_code == 400
    assert client.get("/admin/accounts?cursor=not-ours").status_code == 400


def test_account_page_shows_students_sections_and_every_button_to_a_district_admin(
    staff_client: StaffClient, make_account: MakeAccount, make_student: MakeStudent
) -> None:
    client, _ = staff_client()
    parent = make_account(status=AccountStatus.PENDING)
    link(parent, make_student(sis_id="S-42", first_name="Bo"), "Father")
    page = client.get(f"/admin/accounts/{parent.id}")
    assert page.status_code == 200
    assert 'href="/admin/students/S-42"' in page.text and "Father" in page.text
    for section in ("signins", "sessions", "grants", "audit"):
        assert f'id="{section}"' in page.text
    for button in ("emulate", "resend", "unlock", "temporary", "disable", "expiry", "change-type", "delete"):
        assert f'id="{button}"' in page.text
    assert f'action="/admin/accounts/{parent.id}/students/S-42/remove"' in page.text


def test_help_desk_sees_no_manage_buttons_and_is_refused_a_manage_action(
    staff_client: StaffClient, make_account: MakeAccount
) -> None:
    client, _ = staff_client("help-desk")
    parent = make_account()
    page = client.get(f"/admin/accounts/{parent.id}")
    assert 'id="unlock"' in page.text and 'id="temporary"' in page.text
    for button in ("emulate", "disable", "expiry", "change-type", "delete", "test-mark"):
        assert f'id="{button}"' not in page.text
    answer = client.post(
        f"/admin/accounts/{parent.id}/disable", data={"reason": "x", "csrf_token": csrf_of(page.text)}
    )
    assert answer.status_code == 403
    assert db.session.get(Account, parent.id).status is AccountStatus.CONFIRMED  # type: ignore[union-attr]
    assert client.get("/admin/reset-passwords").status_code == 403


def test_school_admin_gets_404_for_another_schools_account_and_student(
    staff_client: StaffClient, make_account: MakeAccount, make_student: MakeStudent
) -> None:
    client, _ = staff_client("school-admin", ["LES"])
    ours, theirs = make_account(), make_account()
    link(ours, make_student(school_code="LES"))
    other_student = make_student(school_code="OTHER")
    link(theirs, other_student)
    token = csrf_of(client.get(f"/admin/accounts/{ours.id}").text)
    assert client.get(f"/admin/accounts/{theirs.id}").status_code == 404
    answer = client.post(f"/admin/accounts/{theirs.id}/disable", data={"reason": "x", "csrf_token": token})
    assert answer.status_code == 404
    assert client.get(f"/admin/students/{other_student.sis_id}").status_code == 404
    assert result_ids(client.get("/admin/accounts?all=1").text) == [ours.id]


def test_each_action_takes_effect_and_says_so(
    staff_client: StaffClient, make_account: MakeAccount, make_student: MakeStudent
) -> None:
    client, _ = staff_client()
    parent = make_account(status=AccountStatus.PENDING)
    link(parent, make_student())
    page = f"/admin/accounts/{parent.id}"
    post = poster(client, page)

    def act(action: str, **fields: str) -> str:
        return flashed(client, post(f"{page}/{action}", **fields))

    assert "The verification email was sent again." in act("resend-verification")
    assert "The account was not locked." in act("unlock")
    assert "The account was disabled" in act("disable", reason="Asked by the family")
    assert "The account was enabled." in act("enable")
    assert "The account expires on 2031-01-31." in act("expiry", expires_on="2031-01-31")
    assert "The account no longer expires." in act("expiry", expires_on="")
    assert "The account is marked as a test account" in act("test", test="1")
    assert "The account is now a Student account." in act("type", type="student")
    account = db.session.get(Account, parent.id)
    assert account is not None and account.type is AccountType.STUDENT and account.is_test_account
    events = db.session.execute(
        select(AuditEvent.name).where(AuditEvent.account_id == parent.id, AuditEvent.name.like("account.%"))
    ).scalars()
    assert {"account.disabled", "account.enabled", "account.expiry_set", "account.type_changed"} <= set(
        events
    )


def test_bad_action_input_and_a_missing_csrf_token_are_400s_that_change_nothing(
    staff_client: StaffClient, make_account: MakeAccount, make_student: MakeStudent
) -> None:
    client, _ = staff_client()
    parent = make_account()
    link(parent, make_student())
    link(parent, make_student())
    page = f"/admin/accounts/{parent.id}"
    post = poster(client, page)
    no_token = client.post(f"{page}/disable", data={"reason": "no token"})
    assert no_token.status_code == 400 and "did not come from this site" in no_token.text
    no_reason = post(f"{page}/disable", reason="  ")
    assert no_reason.status_code == 400 and "Enter a reason" in no_reason.text
    bad_day = post(f"{page}/expiry", expires_on="31/01/2031")
    assert bad_day.status_code == 400 and "year-month-day" in bad_day.text
    not_pending = post(f"{page}/resend-verification")
    assert not_pending.status_code == 400 and "still pending" in not_pending.text
    two_students = post(f"{page}/type", type="student")
    assert two_students.status_code == 400 and "this account links 2" in two_students.text
    assert post(f"{page}/type", type="staff").status_code == 400
    account = db.session.get(Account, parent.id)
    assert account is not None and account.status is AccountStatus.CONFIRMED and account.expires_at is None
    assert account.type is AccountType.PARENT


def test_temporary_password_is_shown_once_and_never_stored(
    staff_client: StaffClient, make_account: MakeAccount
) -> None:
    client, _ = staff_client("help-desk")
    parent = make_account()
    page = f"/admin/accounts/{parent.id}"
    answer = poster(client, page)(f"{page}/temporary-password")
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    shown = re.search(r'<code class="secret">([^<]+)</code>', answer.text)
    assert shown is not None
    assert services().hasher.verify(db.session.get(Account, parent.id).password_hash, shown.group(1))  # type: ignore[union-attr]
    assert shown.group(1) not in client.get(page).text


def test_removing_a_student_unlinks_it_and_queues_the_mail(
    staff_client: StaffClient, make_account: MakeAccount, make_student: MakeStudent
) -> None:
    client, _ = staff_client()
    parent = make_account()
    student = make_student(sis_id="S-77")
    link(parent, student)
    page = f"/admin/accounts/{parent.id}"
    post = poster(client, page)
    assert "The student was removed" in flashed(client, post(f"{page}/students/S-77/remove"))
    assert (
        db.session.execute(select(GuardianLink).where(GuardianLink.account_id == parent.id)).first() is None
    )
    purposes = db.session.execute(
        select(OutboundEmail.purpose).where(OutboundEmail.account_id == parent.id)
    ).scalars()
    assert "student_removed" in set(purposes)
    # Not linked (any more): the console's 404.
    assert post(f"{page}/students/S-77/remove").status_code == 404


def test_delete_asks_for_confirmation_then_deletes(
    staff_client: StaffClient, make_account: MakeAccount, clock: FrozenClock
) -> None:
    client, _ = staff_client()
    parent = make_account()
    confirm = f"/admin/accounts/{parent.id}/delete"
    page = client.get(confirm)
    assert page.status_code == 200 and 'id="reason"' in page.text
    assert db.session.get(Account, parent.id) is not None
    answer = client.post(confirm, data={"reason": "Test account", "csrf_token": csrf_of(page.text)})
    assert "The account was deleted." in flashed(client, answer)
    db.session.expire_all()
    assert db.session.get(Account, parent.id) is None
    # Sensitive: after five minutes the password and a code are asked again first.
    clock.advance(timedelta(minutes=6))
    again = client.get(f"/admin/accounts/{make_account().id}/delete")
    assert again.status_code == 303 and again.headers["Location"].startswith("/admin/reauth")


def test_student_profile_lists_the_linked_accounts(
    staff_client: StaffClient, make_account: MakeAccount, make_student: MakeStudent
) -> None:
    client, _ = staff_client("help-desk")
    student = make_student(sis_id="S-5", first_name="Cy")
    parent = make_account(first_name="Dana")
    link(parent, student, "Grandparent")
    page = client.get("/admin/students/S-5")
    assert page.status_code == 200
    assert f'href="/admin/accounts/{parent.id}"' in page.text and "Grandparent" in page.text
    assert client.get("/admin/students/nobody").status_code == 404
    # The search page's "Open a student profile" box.
    assert client.get("/admin/students?id=S-5").headers["Location"] == "/admin/students/S-5"


def test_reset_all_shows_the_count_then_starts_the_job(
    staff_client: StaffClient, make_account: MakeAccount
) -> None:
    client, _ = staff_client()
    make_account()
    make_account(account_type=AccountType.STUDENT)
    page = client.get("/admin/reset-passwords")
    assert page.status_code == 200
    assert "This touches 2 parent and student accounts" in page.text
    answer = client.post("/admin/reset-passwords", data={"csrf_token": csrf_of(page.text)})
    assert "The reset started: 2 accounts" in flashed(client, answer)
    run = db.session.execute(select(PasswordResetRun)).scalar_one()
    assert run.total == 2 and run.finished_at is None
