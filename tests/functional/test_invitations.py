"""Guardian invitations over HTTP: a link works once, an expired one and a replaced one are refused,
and the guardian accepts signed in (sign-in returns to the link) or with a new account."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from idp.accounts.models import Account, AccountStatus
from idp.audit import AuditEvent
from idp.clock import FrozenClock
from idp.extensions import db
from idp.mail.models import OutboundEmail
from idp.students.invitations import InvitationUsed
from idp.students.models import GuardianLink, Student
from idp.students.roster.models import GuardianInvitation, RosterGuardian
from idp.students.roster.reader import FolderSource
from idp.tokens import secret_hash
from idp.web.context import services
from tests.conftest import PASSWORD, csrf_token
from tests.functional import oidc

BULK = Path(__file__).resolve().parents[1] / "fixtures" / "oneroster" / "bulk"
LINK = re.compile(r"http://localhost/invitations/(gi_[A-Za-z0-9_-]+)")
NEW_PASSWORD = "lantern-orchard-velvet-93"


@pytest.fixture
def roster(app: object) -> None:
    report = services().roster_import().run(FolderSource(BULK), actor="cli:tester")
    assert not report.is_rejected


def invite(*student_ids: str) -> str:
    """Invite the guardians of these students; return the link's token mailed to Dana (par-1)."""
    invited = services().guardian_invitations().invite(student_ids=student_ids, actor="cli:tester")
    assert "par-1" in {sent.guardian_sourced_id for sent in invited.sent}
    bodies = db.session.execute(
        select(OutboundEmail.body_text)
        .where(OutboundEmail.purpose == "guardian_invitation", OutboundEmail.to_address == "dana@example.org")
        .order_by(OutboundEmail.created_at.desc(), OutboundEmail.id)
    ).scalars()
    tokens = [LINK.search(body).group(1) for body in bodies]  # type: ignore[union-attr]
    # The newest invitation is the one whose hash is on record.
    (token,) = [
        t
        for t in tokens
        if db.session.execute(
            select(GuardianInvitation).where(GuardianInvitation.token_hash == secret_hash(t))
        ).scalar_one_or_none()
    ]
    db.session.commit()
    return token


def text(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def links_of(username: str) -> list[tuple[str, str]]:
    db.session.expire_all()
    rows = db.session.execute(
        select(Student.sis_id, GuardianLink.relationship)
        .join(GuardianLink, GuardianLink.student_id == Student.id)
        .join(Account, Account.id == GuardianLink.account_id)
        .where(Account.username == username)
        .order_by(Student.sis_id)
    ).all()
    db.session.commit()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def events(name: str) -> list[AuditEvent]:
    found = list(db.session.execute(select(AuditEvent).where(AuditEvent.name == name)).scalars())
    db.session.commit()
    return found


def any_csrf(client: FlaskClient) -> str:
    """The browser's CSRF token (one per session), read off the sign-in page."""
    return csrf_token(client.get("/signin").get_data(as_text=True))


def create_account(client: FlaskClient, token: str, **fields: str) -> TestResponse:
    data = {
        "csrf_token": any_csrf(client),
        "first_name": "Dana",
        "last_name": "Rivera",
        "email": "dana@example.org",
        "username": "dana.rivera",
        "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD,
        **fields,
    }
    return client.post(f"/invitations/{token}/account", data=data)


@pytest.mark.usefixtures("roster")
def test_the_page_shows_the_school_and_first_names_only_and_asks_to_sign_in_or_create_an_account(
    client: FlaskClient,
):
    token = invite("100234", "100235")

    page = client.get(f"/invitations/{token}")

    body = text(page)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert "Lincoln Elementary School" in body and 'Roosevelt High School, "Home of the Riders"' in body
    assert "<li>Max</li>" in body and "<li>Zoe</li>" in body and "Rivera" not in body
    assert f"/signin?next=/invitations/{token}" in body and f"/invitations/{token}/account" in body


@pytest.mark.usefixtures("roster")
def test_a_new_account_from_the_link_is_linked_verified_and_the_link_then_refused(client: FlaskClient):
    token = invite("100234", "100235")

    done = create_account(client, token)

    assert done.status_code == 200, text(done)
    assert "These students are linked to it: Max, Zoe." in text(done)
    assert links_of("dana.rivera") == [("100234", "Parent"), ("100235", "Parent")]
    account = db.session.execute(select(Account).where(Account.username == "dana.rivera")).scalar_one()
    # The link came to this very address: it is verified, and the account may sign in at once.
    assert account.status is AccountStatus.CONFIRMED and account.email_verified_at is not None
    guardian = db.session.execute(
        select(RosterGuardian).where(RosterGuardian.sourced_id == "par-1")
    ).scalar_one()
    assert guardian.account_id == account.id
    (accepted,) = events("guardian_invitation.accepted")
    assert accepted.account_id == account.id and accepted.details["student_ids"] == ["100235", "100234"]
    db.session.commit()

    again = client.get(f"/invitations/{token}")
    second = create_account(client, token, username="someone.else", email="else@example.org")

    assert again.status_code == 404 and "This invitation has been used already." in text(again)
    assert second.status_code == 404
    assert db.session.execute(select(Account).where(Account.username == "someone.else")).first() is None


@pytest.mark.usefixtures("roster")
def test_a_signed_in_parent_returns_to_the_link_and_accepts_it_once(
    client: FlaskClient, make_account: Callable[..., Account]
):
    make_account(username="dana.r", email="dana@example.org", first_name="Dana", last_name="Rivera")
    token = invite("100234")
    page = client.get(f"/signin?next=/invitations/{token}")
    signed_in = client.post(
        "/signin",
        data={
            "csrf_token": csrf_token(page.get_data(as_text=True)),
            "username": "dana.r",
            "password": PASSWORD,
            "next": f"/invitations/{token}",
        },
    )
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == f"/invitations/{token}"
    invitation_page = client.get(f"/invitations/{token}")
    assert "You are signed in as dana.r." in text(invitation_page)

    accepted = client.post(
        f"/invitations/{token}", data={"csrf_token": csrf_token(invitation_page.get_data(as_text=True))}
    )

    assert accepted.status_code == 303 and accepted.headers["Location"] == "/account/students"
    # Only the student named when inviting, with the roster's relationship.
    assert links_of("dana.r") == [("100234", "Parent")]
    assert "Zoe is now linked to your account." in text(client.get("/account/students"))
    mailed = db.session.execute(
        select(OutboundEmail.to_address).where(OutboundEmail.purpose == "student_linked")
    ).scalars()
    assert list(mailed) == ["dana@example.org"]
    db.session.commit()
    again = client.post(
        f"/invitations/{token}", data={"csrf_token": csrf_token(invitation_page.get_data(as_text=True))}
    )
    assert again.status_code == 404 and "used already" in text(again)


@pytest.mark.usefixtures("roster")
def test_an_expired_link_says_so_and_offers_the_access_id_path(client: FlaskClient, clock: FrozenClock):
    token = invite("100234")
    clock.advance(timedelta(days=14, seconds=1))

    page = client.get(f"/invitations/{token}")
    created = create_account(client, token)

    assert page.status_code == 410
    assert "This invitation has expired." in text(page) and 'href="/register"' in text(page)
    assert created.status_code == 410
    assert links_of("dana.rivera") == []


@pytest.mark.usefixtures("roster")
def test_inviting_again_replaces_the_link_and_the_older_one_is_refused(client: FlaskClient):
    older = invite("100234")
    newer = invite("100234")

    refused = client.get(f"/invitations/{older}")
    works = client.get(f"/invitations/{newer}")

    assert refused.status_code == 404 and "a newer invitation may have replaced it" in text(refused)
    assert works.status_code == 200
    sent = events("guardian_invitation.sent")
    assert [e.details["replaced"] for e in sent if e.details["guardian"] == "par-1"] == [False, True]


@pytest.mark.usefixtures("roster")
def test_accepting_needs_the_csrf_token_and_a_parent_account(
    client: FlaskClient, make_account: Callable[..., Account]
):
    from idp.accounts.models import AccountType

    token = invite("100234")
    make_account(username="zoe.kid", email="zoe@example.org", account_type=AccountType.STUDENT)
    assert oidc.sign_in(client, "zoe.kid").status_code == 303

    forged = client.post(f"/invitations/{token}", data={})
    page = client.get(f"/invitations/{token}")
    as_student = client.post(f"/invitations/{token}", data={"csrf_token": any_csrf(client)})

    assert forged.status_code == 400
    assert "Sign in with a parent's account" in text(page) and "<form" not in text(page).split("<main")[1]
    assert as_student.status_code == 403 and "Sign in with a parent's account" in text(as_student)
    assert links_of("zoe.kid") == []


@pytest.mark.usefixtures("roster")
def test_a_link_is_used_once_even_by_two_accounts_racing(make_account: Callable[..., Account]):
    token = invite("100234")
    first = make_account(username="first.parent")
    second = make_account(username="second.parent")
    invitations = services().guardian_invitations()

    invitations.accept(token, first)

    with pytest.raises(InvitationUsed):
        invitations.accept(token, second)
    assert links_of("second.parent") == []


@pytest.mark.usefixtures("roster")
def test_guardians_without_an_address_are_counted_not_mailed():
    invited = services().guardian_invitations().invite(school_code="LES", actor="cli:tester")

    assert sorted(sent.guardian_sourced_id for sent in invited.sent) == ["par-1"]
    assert invited.without_email == 1  # par-2, Sam, has no address
    db.session.commit()


def test_the_sign_in_goes_back_only_to_a_local_invitation_page():
    from idp.accounts.views.signin import return_path

    assert return_path("/invitations/gi_abc") == "/invitations/gi_abc"
    for unsafe in (
        "https://evil.example/",
        "//evil.example/invitations/x",
        "/account",
        "/invitations/../admin",
        None,
    ):
        assert return_path(unsafe) is None


def test_the_links_life_is_a_setting_of_14_days_by_default():
    from idp.config import Settings

    assert Settings.from_env({}).invitation_seconds == 1_209_600
    assert Settings.from_env({"IDP_INVITATION_SECONDS": "3600"}).invitation_seconds == 3600
