"""A parent's own data in Account Preferences, over HTTP: removing a student, changing a
relationship, the signed-in devices, downloading the data, and deleting the account. Mail goes
through a real SMTP server; portals hear of ended sessions through back-channel logout."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.accounts.models import Account, OPSession
from idp.audit import AuditEvent
from idp.config import Settings
from idp.extensions import db
from idp.mail.delivery import deliver_due
from idp.oauth.models import Consent, RefreshTokenFamily
from idp.students.models import GuardianLink, Student
from idp.web.context import services
from tests.admin_fixtures import csrf_of
from tests.conftest import PASSWORD, AuthRequest, RegisteredTestClient, csrf_token, settings_for_tests
from tests.functional.oidc import authorize_as, redeem, sign_in
from tests.functional.tokens import OFFLINE_SCOPE, count, refresh
from tests.receiver import Received, Receiver
from tests.smtp import Inbox, text_of

FIREFOX_ON_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_ON_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)

MakeAccount = Callable[..., Account]
MakeStudent = Callable[..., Student]


@pytest.fixture
def settings(database_url: str, keys_dir: Path, mailbox: tuple[Inbox, int]) -> Settings:
    return settings_for_tests(database_url, keys_dir, smtp_url=f"smtp://127.0.0.1:{mailbox[1]}")


@pytest.fixture
def portal(make_client: Callable[..., RegisteredTestClient], receiver: Receiver) -> RegisteredTestClient:
    return make_client(scope=OFFLINE_SCOPE, backchannel_logout_uri=receiver.url)


def link(account: Account, student: Student, relationship: str = "Mother") -> None:
    services().guardianship().link(account, student, relationship)
    db.session.commit()


def browser(app: Flask, user_agent: str = FIREFOX_ON_WINDOWS) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    return client


def signed_in(app: Flask, account: Account, user_agent: str = FIREFOX_ON_WINDOWS) -> FlaskClient:
    client = browser(app, user_agent)
    with app.app_context():
        assert sign_in(client, account.username).status_code == 303
    return client


def at_portal(
    app: Flask, account: Account, portal: RegisteredTestClient, user_agent: str = FIREFOX_ON_WINDOWS
) -> tuple[FlaskClient, dict[str, Any]]:
    """A browser signed in to the portal with offline access, and its tokens."""
    client = browser(app, user_agent)
    with app.app_context():
        auth = AuthRequest(portal.client_id, scope=OFFLINE_SCOPE)
        code = authorize_as(client, auth, account.username)["code"]
        tokens = redeem(client, auth, code, portal.client_secret).get_json()
    return client, tokens


def post(client: FlaskClient, page: str, action: str, **fields: str) -> Any:
    shown = client.get(page)
    assert shown.status_code == 200, shown.text
    return client.post(action, data={"csrf_token": csrf_token(shown.text), **fields})


def logout_sid(told: Received) -> str:
    """The ``sid`` of a back-channel logout token (its signature is the logout tests' concern)."""
    (token,) = told.form["logout_token"]
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sid"])


def deliver() -> None:
    built = services()
    deliver_due(built.session, built.mail_transport, sender=built.settings.mail_from, clock=built.clock)


def events(name: str) -> list[AuditEvent]:
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.name == name)).scalars())


# --- removing a student -------------------------------------------------------------------
def test_removing_a_student_asks_first_then_unlinks_mails_and_audits(
    app: Flask, make_account: MakeAccount, make_student: MakeStudent, mailbox: tuple[Inbox, int]
) -> None:
    parent = make_account(email="rosa@example.org")
    ada, ben = make_student(first_name="Ada"), make_student(first_name="Ben")
    link(parent, ada)
    link(parent, ben)
    client = signed_in(app, parent)

    students = client.get("/account/students").text
    assert f"/account/students/{ada.id}/remove" in students
    confirm = client.get(f"/account/students/{ada.id}/remove")
    assert confirm.status_code == 200
    assert "Remove Ada Student from your account?" in confirm.text
    assert count(GuardianLink) == 2  # asking removes nothing

    answer = post(client, f"/account/students/{ada.id}/remove", f"/account/students/{ada.id}/remove")

    assert answer.status_code == 303
    assert "Ada Student was removed from your account." in client.get(answer.headers["Location"]).text
    linked = db.session.execute(select(GuardianLink.student_id)).scalars().all()
    assert linked == [ben.id]
    db.session.refresh(parent)
    assert parent.primary_student_id == ben.id
    (event,) = events("guardian_link.removed")
    assert (event.account_id, event.details["actor"], event.details["student_id"]) == (
        parent.id,
        "holder",
        ada.sis_id,
    )
    deliver()
    (notice,) = mailbox[0].to("rosa@example.org")
    assert notice["Subject"] == "A student was removed from your account"
    assert "Ada" in text_of(notice)


def test_removing_a_student_not_linked_or_without_csrf_changes_nothing(
    app: Flask, make_account: MakeAccount, make_student: MakeStudent
) -> None:
    parent, other = make_account(), make_account()
    mine, theirs = make_student(), make_student()
    link(parent, mine)
    link(other, theirs)
    client = signed_in(app, parent)
    token = csrf_token(client.get("/account/students").text)

    for student_id in (theirs.id, "no-such-student", "x" * 500):
        assert client.get(f"/account/students/{student_id}/remove").status_code == 404
        refused = client.post(f"/account/students/{student_id}/remove", data={"csrf_token": token})
        assert refused.status_code == 404
        assert "This student is not linked to your account." in refused.text
    no_csrf = client.post(f"/account/students/{mine.id}/remove")
    assert no_csrf.status_code == 400

    assert count(GuardianLink) == 2
    assert events("guardian_link.removed") == []
    assert app.test_client().get(f"/account/students/{mine.id}/remove").status_code == 303  # signed out


# --- changing a relationship ----------------------------------------------------------------
def test_changing_a_relationship_saves_and_audits_and_refuses_unknown_labels(
    app: Flask, make_account: MakeAccount, make_student: MakeStudent
) -> None:
    parent = make_account()
    ada = make_student(first_name="Ada")
    link(parent, ada, "Mother")
    client = signed_in(app, parent)
    page = f"/account/students/{ada.id}/relationship"
    assert 'value="Grandparent"' in client.get(page).text

    for wrong in ("Uncle", "", "G" * 300):
        refused = post(client, page, page, relationship=wrong)
        assert refused.status_code == 400
        assert "Choose one of the relationships offered." in refused.text
    assert db.session.execute(select(GuardianLink.relationship)).scalar_one() == "Mother"

    saved = post(client, page, page, relationship="grandparent")

    assert saved.status_code == 303
    assert "Your relationship to Ada Student was saved." in client.get(saved.headers["Location"]).text
    db.session.expire_all()
    assert db.session.execute(select(GuardianLink.relationship)).scalar_one() == "Grandparent"
    (event,) = events("guardian_link.relationship_changed")
    assert (event.details["relationship"], event.details["previous_relationship"]) == (
        "Grandparent",
        "Mother",
    )
    assert client.post(page, data={"relationship": "Father"}).status_code == 400  # no CSRF token


# --- signed-in devices ----------------------------------------------------------------------
def test_devices_are_listed_by_browser_network_and_last_seen(
    app: Flask, make_account: MakeAccount, portal: RegisteredTestClient
) -> None:
    parent = make_account()
    at_portal(app, parent, portal, SAFARI_ON_IPHONE)
    mine = signed_in(app, parent)

    page = mine.get("/account/devices")

    assert page.status_code == 200
    assert "Firefox on Windows" in page.text and "(this device)" in page.text
    assert "Safari on iOS" in page.text and "Portals: Test Portal" in page.text
    # The network, never the address; no place is guessed.
    assert "127.0.0.0/24" in page.text and "127.0.0.1" not in page.text


def test_signing_out_one_device_ends_its_session_tells_its_portal_and_revokes_its_tokens(
    app: Flask, make_account: MakeAccount, portal: RegisteredTestClient, receiver: Receiver
) -> None:
    parent = make_account()
    phone, phone_tokens = at_portal(app, parent, portal, SAFARI_ON_IPHONE)
    mine = signed_in(app, parent)
    phone_session, phone_sid = db.session.execute(
        select(OPSession.id, OPSession.sid).where(OPSession.user_agent == SAFARI_ON_IPHONE)
    ).one()

    answer = post(mine, "/account/devices", f"/account/devices/{phone_session}/sign-out")

    assert answer.status_code == 303
    assert "The device was signed out." in mine.get("/account/devices").text
    assert phone.get("/account").status_code == 303  # the phone is signed out
    assert mine.get("/account").status_code == 200
    (told,) = receiver.wait_for(1)
    assert logout_sid(told) == phone_sid
    gone = refresh(phone, portal.client_id, portal.client_secret, phone_tokens["refresh_token"])
    assert (gone.status_code, gone.get_json()["error"]) == (400, "invalid_grant")
    assert count(RefreshTokenFamily, RefreshTokenFamily.revoked_reason == "signed_out_by_holder") == 1
    (event,) = events("device.signed_out")
    assert (event.details["ended_sessions"], event.details["revoked_grants"]) == (1, 1)

    again = post(mine, "/account/devices", f"/account/devices/{phone_session}/sign-out")
    assert again.status_code == 404
    assert "no longer signed in" in again.text


def test_a_device_of_another_account_cannot_be_signed_out(app: Flask, make_account: MakeAccount) -> None:
    parent, other = make_account(), make_account()
    mine = signed_in(app, parent)
    theirs = signed_in(app, other)
    their_session = db.session.execute(
        select(OPSession.id).where(OPSession.account_id == other.id)
    ).scalar_one()

    refused = post(mine, "/account/devices", f"/account/devices/{their_session}/sign-out")

    assert refused.status_code == 404
    assert theirs.get("/account").status_code == 200
    assert count(OPSession) == 2


def test_signing_out_the_other_devices_keeps_this_one_and_this_one_can_sign_itself_out(
    app: Flask, make_account: MakeAccount, portal: RegisteredTestClient, receiver: Receiver
) -> None:
    parent = make_account()
    phone, _tokens = at_portal(app, parent, portal, SAFARI_ON_IPHONE)
    tablet = signed_in(app, parent, SAFARI_ON_IPHONE)
    mine = signed_in(app, parent)

    answer = post(mine, "/account/devices", "/account/devices/sign-out-others")

    assert answer.status_code == 303
    assert phone.get("/account").status_code == 303 and tablet.get("/account").status_code == 303
    assert mine.get("/account").status_code == 200
    assert len(receiver.wait_for(1)) == 1
    (event,) = events("devices.signed_out")
    assert event.details["ended_sessions"] == 2
    nothing_left = post(mine, "/account/devices", "/account/devices/sign-out-others")
    assert "No other device was signed in." in mine.get(nothing_left.headers["Location"]).text

    (own,) = db.session.execute(select(OPSession.id)).scalars().all()
    itself = post(mine, "/account/devices", f"/account/devices/{own}/sign-out")
    assert itself.status_code == 200 and "You have been signed out." in itself.text
    assert mine.get("/account").status_code == 303
    assert count(OPSession) == 0


# --- downloading the data -------------------------------------------------------------------
def test_the_download_is_complete_private_and_the_parents_own(
    app: Flask, make_account: MakeAccount, make_student: MakeStudent, portal: RegisteredTestClient
) -> None:
    parent = make_account(username="rosa.parks", email="rosa@example.org", first_name="Rosa")
    other = make_account(username="someone.else", email="else@example.org", first_name="Else")
    ada, theirs = make_student(first_name="Ada", grade="3"), make_student(first_name="Zed")
    link(parent, ada, "Mother")
    link(other, theirs, "Father")
    at_portal(app, other, portal)
    signed_in(app, other)
    client, _tokens = at_portal(app, parent, portal)
    # A wrong password is part of the history too.
    with app.app_context():
        sign_in(browser(app), "rosa.parks", password="not-the-password")
    db.session.add(Consent(account_id=parent.id, client_id=portal.client_id, scope="openid students"))
    db.session.add(Consent(account_id=other.id, client_id=portal.client_id, scope="openid email"))
    db.session.commit()

    response = client.get("/account/data.json")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert "no-store" in response.headers["Cache-Control"]
    data = json.loads(response.text)
    assert set(data) == {"exported_at", "profile", "students", "sign_in_history", "devices", "consents"}
    profile = data["profile"]
    assert (profile["id"], profile["username"], profile["email"], profile["first_name"]) == (
        parent.id,
        "rosa.parks",
        "rosa@example.org",
        "Rosa",
    )
    assert "password" not in json.dumps(profile).replace("password_changed_at", "")
    (student,) = data["students"]
    assert (student["student_id"], student["first_name"], student["relationship"], student["primary"]) == (
        ada.sis_id,
        "Ada",
        "Mother",
        True,
    )
    assert student["school"] and student["grade"] == "3"
    outcomes = [entry["outcome"] for entry in data["sign_in_history"]]
    assert "succeeded" in outcomes and "failed" in outcomes
    assert data["sign_in_history"][0]["browser"] in ("Firefox", None)
    assert len(data["devices"]) == 1 and data["devices"][0]["browser"] == "Firefox"
    (consent,) = data["consents"]
    assert (consent["portal"], consent["scope"]) == ("Test Portal", "openid students")
    # Nothing of the other parent's.
    for theirs_text in ("someone.else", "else@example.org", "Zed", theirs.sis_id, other.id, "Father"):
        assert theirs_text not in response.text
    assert events("account.data_exported")[0].account_id == parent.id

    assert app.test_client().get("/account/data.json").status_code == 303  # signed out: nothing


# --- deleting the account -------------------------------------------------------------------
def test_a_wrong_or_missing_password_deletes_nothing(
    app: Flask, make_account: MakeAccount, make_student: MakeStudent
) -> None:
    parent = make_account()
    link(parent, make_student())
    client = signed_in(app, parent)

    for password in ("not-my-password", "", "x" * 1000):
        refused = post(client, "/account/delete", "/account/delete", password=password)
        assert refused.status_code == 400
        assert "The password is not right. Your account was not deleted." in refused.text
    assert client.post("/account/delete", data={"password": PASSWORD}).status_code == 400  # no CSRF

    assert db.session.get(Account, parent.id) is not None
    assert count(GuardianLink) == 1 and count(OPSession) == 1
    assert events("account.deleted") == []
    assert len(events("password_check.failed")) == 3


def test_deleting_the_account_removes_it_mails_signs_out_and_leaves_a_tombstone(
    app: Flask,
    make_account: MakeAccount,
    make_student: MakeStudent,
    portal: RegisteredTestClient,
    receiver: Receiver,
    mailbox: tuple[Inbox, int],
) -> None:
    parent = make_account(username="rosa.parks", email="rosa@example.org", first_name="Rosa")
    other = make_account()
    ada = make_student(first_name="Ada")
    link(parent, ada)
    link(other, ada, "Father")
    phone, phone_tokens = at_portal(app, parent, portal, SAFARI_ON_IPHONE)
    client = signed_in(app, parent)
    parent_id = parent.id
    confirm = client.get("/account/delete")
    assert confirm.status_code == 200 and "Ada Student" in confirm.text

    answer = client.post(
        "/account/delete", data={"csrf_token": csrf_token(confirm.text), "password": PASSWORD}
    )

    assert answer.status_code == 200 and "Your account was deleted." in answer.text
    db.session.expire_all()
    # Gone: the account, its links, sessions, grants.
    assert db.session.get(Account, parent_id) is None
    assert count(GuardianLink, GuardianLink.account_id == parent_id) == 0
    assert count(OPSession, OPSession.account_id == parent_id) == 0
    assert count(RefreshTokenFamily, RefreshTokenFamily.account_id == parent_id) == 0
    assert client.get("/account").status_code == 303 and phone.get("/account").status_code == 303
    gone = refresh(phone, portal.client_id, portal.client_secret, phone_tokens["refresh_token"])
    assert gone.status_code == 400
    assert len(receiver.wait_for(1)) == 1
    # Stays: the student, the other parent and their link, and a tombstone with nothing personal.
    assert db.session.get(Student, ada.id) is not None and db.session.get(Account, other.id) is not None
    assert count(GuardianLink, GuardianLink.account_id == other.id) == 1
    (tombstone,) = events("account.deleted")
    assert tombstone.account_id is None
    assert tombstone.details["deleted_account_id"] == parent_id
    assert tombstone.details["actor"] == "holder"
    assert (tombstone.details["ended_sessions"], tombstone.details["unlinked_students"]) == (2, 1)
    flat = json.dumps(tombstone.details)
    for personal in ("rosa.parks", "rosa@example.org", "Rosa"):
        assert personal not in flat
    deliver()
    (notice,) = mailbox[0].to("rosa@example.org")
    assert notice["Subject"] == "Your account has been removed"
    assert "you deleted your school sign-in account rosa.parks" in text_of(notice)


# --- staff emulation ------------------------------------------------------------------------
def test_staff_emulating_the_parent_can_do_none_of_it(
    app: Flask,
    staff_client: Callable[..., tuple[FlaskClient, Account]],
    make_account: MakeAccount,
    make_student: MakeStudent,
) -> None:
    console, _staff = staff_client()
    parent = make_account()
    ada = make_student()
    link(parent, ada)
    token = csrf_of(console.get("/admin/").text)
    started = console.post(
        f"/admin/accounts/{parent.id}/emulate", data={"csrf_token": token, "reason": "Parent on the phone"}
    )
    assert started.status_code == 303
    page_token = csrf_token(console.get("/account").text)

    for page in (
        "/account/devices",
        "/account/data.json",
        "/account/delete",
        f"/account/students/{ada.id}/remove",
    ):
        refused = console.get(page)
        assert refused.status_code == 403, page
        assert "cannot be managed here" in refused.text
    for action, fields in (
        ("/account/delete", {"password": PASSWORD}),
        (f"/account/students/{ada.id}/remove", {}),
        (f"/account/students/{ada.id}/relationship", {"relationship": "Father"}),
        ("/account/devices/sign-out-others", {}),
    ):
        assert console.post(action, data={"csrf_token": page_token, **fields}).status_code == 403, action

    db.session.expire_all()
    assert db.session.get(Account, parent.id) is not None
    assert db.session.execute(select(GuardianLink.relationship)).scalar_one() == "Mother"
    assert events("account.data_exported") == []
