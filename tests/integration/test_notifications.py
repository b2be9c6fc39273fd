"""Notifications: what the holder is told, in which words and to which address, on the real databases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from idp.accounts.models import Account
from idp.accounts.preferences import ChangeRefused, PreferencesService
from idp.accounts.registration import StudentEntry
from idp.accounts.service import SignInContext
from idp.extensions import db
from idp.mail.compose import Composed, TemplateComposer, UnknownMessageKind
from idp.mail.models import OutboundEmail
from idp.mail.notifications import Notifier
from idp.mail.outbox import Outbox
from idp.students.models import Student
from idp.web.context import services
from tests.conftest import PASSWORD

NEW_PASSWORD = "lantern-orchard-velvet-93"


def preferences() -> PreferencesService:
    return services().preferences()


def mails() -> list[OutboundEmail]:
    # By purpose: mail queued at one frozen instant has no order of its own.
    rows = list(db.session.execute(select(OutboundEmail).order_by(OutboundEmail.purpose)).scalars())
    db.session.commit()
    return rows


def change_password(account: Account, current: str = PASSWORD) -> None:
    preferences().change_password(
        account, current=current, new=NEW_PASSWORD, confirm=NEW_PASSWORD, context=SignInContext()
    )
    db.session.commit()


@pytest.fixture
def dana(make_account: Callable[..., Account]) -> Account:
    return make_account(
        username="dana.rivera", email="dana@example.org", first_name="Dana", last_name="Rivera"
    )


@pytest.fixture
def zoe(make_student: Callable[..., Student]) -> Student:
    return make_student(
        sis_id="100234", first_name="Zoe", last_name="Rivera", access_id="ZR-1", access_password="orchid-42"
    )


def test_a_password_change_queues_one_password_changed_mail(dana: Account):
    change_password(dana)

    (mail,) = mails()
    assert (mail.to_address, mail.purpose, mail.account_id) == (
        "dana@example.org",
        "password_changed",
        dana.id,
    )
    assert mail.subject == "Your password was changed"
    assert "The password of your school sign-in account dana.rivera was changed on" in mail.body_text
    assert "contact your school" in mail.body_text
    assert mail.body_html and "<p>Hello Dana Rivera,</p>" in mail.body_html


def test_a_refused_password_change_sends_nothing(dana: Account):
    with pytest.raises(ChangeRefused):
        change_password(dana, current="not-the-password")
    db.session.rollback()

    assert mails() == []


def test_the_forced_change_at_sign_in_also_notifies(dana: Account):
    preferences().change_password(
        dana,
        current=PASSWORD,
        new=NEW_PASSWORD,
        confirm=NEW_PASSWORD,
        context=SignInContext(),
        required=True,
    )
    db.session.commit()

    assert [m.purpose for m in mails()] == ["password_changed"]


def test_linking_a_student_mails_the_holder(dana: Account, zoe: Student):
    entry = StudentEntry(access_id="ZR-1", access_password="orchid-42", relationship="mother")

    preferences().add_student(dana, entry, ip_address="203.0.113.7")
    db.session.commit()

    (mail,) = mails()
    assert (mail.to_address, mail.purpose) == ("dana@example.org", "student_linked")
    assert mail.subject == "A student was linked to your account"
    # The relationship as stored: the district's label, whatever case was typed.
    assert "Zoe Rivera was linked to your school sign-in account dana.rivera" in mail.body_text
    assert "with the relationship Mother." in mail.body_text


def test_an_email_change_is_told_to_the_old_address(dana: Account):
    assert preferences().change_email(dana, "new@example.org")
    db.session.commit()

    changed, verification = mails()
    assert (changed.to_address, changed.purpose) == ("dana@example.org", "email_changed")
    assert "was changed from dana@example.org to new@example.org" in changed.body_text
    assert (verification.to_address, verification.purpose) == ("new@example.org", "email_verification")
    assert verification.body_html and 'href="http://localhost/verify/' in verification.body_html


def test_test_accounts_are_sent_no_mail(dana: Account, zoe: Student):
    dana.is_test_account = True
    db.session.commit()

    change_password(dana)
    preferences().change_email(dana, "new@example.org")
    preferences().add_student(
        dana,
        StudentEntry(access_id="ZR-1", access_password="orchid-42", relationship="Mother"),
        ip_address=None,
    )
    db.session.commit()

    assert mails() == []
    assert services().notifier().send(dana, "password_changed") is False


def test_html_bodies_escape_what_users_typed(make_account: Callable[..., Account], make_student):
    ana = make_account(first_name="<b>Ana</b>", last_name="Lopez")
    make_student(first_name="<i>Zoe</i>", last_name="Rivera", access_id="ZR-9", access_password="orchid-9")

    change_password(ana)
    preferences().add_student(
        ana,
        StudentEntry(access_id="ZR-9", access_password="orchid-9", relationship="Mother"),
        ip_address=None,
    )
    db.session.commit()

    changed, linked = mails()
    for mail in (changed, linked):
        assert mail.body_html
        assert "Hello &lt;b&gt;Ana&lt;/b&gt; Lopez," in mail.body_html
        assert "<b>" not in mail.body_html and "<i>" not in mail.body_html
        # Plain text is not HTML: the name stays as typed.
        assert "Hello <b>Ana</b> Lopez," in mail.body_text
    assert linked.purpose == "student_linked" and linked.body_html
    assert "&lt;i&gt;Zoe&lt;/i&gt; Rivera was linked" in linked.body_html


# --- the composer ------------------------------------------------------------------------
KINDS: dict[str, tuple[dict[str, Any], str, tuple[str, ...]]] = {
    "email_verification": (
        {"link": "http://localhost/verify/t?a=1&b=2", "days": 3},
        "Verify your email address",
        ("http://localhost/verify/t?a=1&b=2", "3 days"),
    ),
    "email_changed": (
        {"old_email": "old@example.org", "new_email": "new@example.org"},
        "The email address of your account was changed",
        ("old@example.org", "new@example.org"),
    ),
    "password_changed": ({}, "Your password was changed", ("dana.rivera", "contact your school")),
    "student_linked": (
        {"student_name": "Zoe Rivera", "relationship": "Mother"},
        "A student was linked to your account",
        ("Zoe Rivera", "Mother"),
    ),
    "password_reset": (
        {"link": "http://localhost/reset/rt_abc", "minutes": 30},
        "Reset your password",
        ("reset the password", "dana.rivera", "http://localhost/reset/rt_abc", "within 30 minutes", "ignore"),
    ),
    "username_reminder": ({"usernames": ["dana.rivera"]}, "Your username", ("dana.rivera",)),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_has_a_subject_a_text_and_an_html_body(dana: Account, kind: str):
    values, subject, words = KINDS[kind]

    composed = TemplateComposer().compose(kind, dana, **values)

    assert composed.subject == subject
    assert composed.text.startswith("Hello Dana Rivera,")
    assert composed.html.startswith("<!doctype html>") and f"<title>{subject}</title>" in composed.html
    for word in words:
        assert word in composed.text
        assert word.replace("&", "&amp;") in composed.html
    # Plain, self-contained HTML: no images, styles or scripts from elsewhere.
    assert "<img" not in composed.html and "<script" not in composed.html and "<link" not in composed.html


def test_links_in_html_are_attribute_escaped(dana: Account):
    composed = TemplateComposer().compose(
        "password_reset", dana, link='http://localhost/reset/x"><script>', minutes=30
    )

    assert 'href="http://localhost/reset/x&#34;&gt;&lt;script&gt;"' in composed.html
    assert "<script>" not in composed.html


def test_the_username_reminder_lists_every_username_on_the_address(dana: Account):
    composed = TemplateComposer().compose("username_reminder", dana, usernames=["dana.rivera", "drivera2"])

    assert composed.subject == "Your usernames"
    # Several accounts may share the address: no one holder's name in the greeting.
    assert composed.text.startswith("Hello,\n")
    assert "    dana.rivera\n    drivera2\n" in composed.text
    assert "<li><strong>dana.rivera</strong></li>" in composed.html
    assert "<li><strong>drivera2</strong></li>" in composed.html


def test_mail_is_written_in_the_holders_language(dana: Account):
    dana.locale = "es"

    composed = TemplateComposer().compose("password_changed", dana)

    assert '<html lang="es">' in composed.html


def test_an_unknown_kind_is_refused(dana: Account):
    with pytest.raises(UnknownMessageKind):
        TemplateComposer().compose("newsletter", dana)


# --- the notifier ------------------------------------------------------------------------
def test_the_notifier_queues_the_composed_words_to_the_given_address_and_purpose(dana: Account):
    notifier = Notifier(
        db.session, outbox=Outbox(db.session, clock=services().clock), composer=TemplateComposer()
    )
    values = {"old_email": "old@example.org", "new_email": "dana@example.org"}

    assert notifier.send(dana, "email_changed", to="old@example.org", purpose="custom", **values)
    db.session.commit()

    (mail,) = mails()
    expected = TemplateComposer().compose("email_changed", dana, **values)
    assert (mail.to_address, mail.purpose, mail.account_id) == ("old@example.org", "custom", dana.id)
    assert Composed(mail.subject, mail.body_text, mail.body_html or "") == expected
