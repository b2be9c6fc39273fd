"""/register and /verify through HTTP: every form, CSRF, every message, bad input."""

from __future__ import annotations

import email
import email.policy
import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from idp.accounts.district import DistrictOptions, DistrictOptionsService
from idp.accounts.models import Account, AccountStatus
from idp.accounts.password_policy import PasswordPolicyService
from idp.config import Settings
from idp.extensions import db
from idp.mail.models import OutboundEmail
from idp.students.models import GuardianLink, Student
from idp.web.context import services
from tests.conftest import csrf_token, settings_for_tests
from tests.functional import oidc
from tests.integration.helpers import count

PASSWORD = "lantern-orchard-velvet-93"


@pytest.fixture
def settings(database_url: str, keys_dir: Path, outbox: Path) -> Settings:
    # Mail goes to files in the module's own folder (the default would be instance/outbox).
    return settings_for_tests(database_url, keys_dir, smtp_url=f"file://{outbox}")


@pytest.fixture
def students(make_student: Callable[..., Student]) -> tuple[Student, Student]:
    zoe = make_student(
        sis_id="100234", first_name="Zoe", last_name="Rivera", access_id="ZR-1", access_password="orchid-42"
    )
    adam = make_student(
        sis_id="100235",
        first_name="Adam",
        last_name="Rivera",
        school_code="WMS",
        access_id="AR-2",
        access_password="comet-17",
    )
    return zoe, adam


def text(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def registration_form(**overrides: Any) -> dict[str, str]:
    values = {
        "first_name": "Dana",
        "last_name": "Rivera",
        "email": "dana@example.org",
        "username": "dana.rivera",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        "students-0-name": "Zoe",
        "students-0-access_id": "ZR-1",
        "students-0-access_password": "orchid-42",
        "students-0-relationship": "Mother",
        "students-1-name": "Adam",
        "students-1-access_id": "AR-2",
        "students-1-access_password": "comet-17",
        "students-1-relationship": "Mother",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def post_register(client: FlaskClient, **overrides: Any) -> TestResponse:
    with client.application.app_context():
        page = client.get("/register")
        data = {"csrf_token": csrf_token(page.get_data(as_text=True)), **registration_form(**overrides)}
        return client.post("/register", data=data)


def finish_reads() -> None:
    db.session.commit()  # end the read: SQLite's BEGIN IMMEDIATE would hold off the next request


def accounts() -> list[Account]:
    db.session.expire_all()
    rows = list(db.session.execute(select(Account)).scalars())
    finish_reads()
    return rows


def test_register_page_shows_two_student_rows_without_javascript(client: FlaskClient):
    page = text(client.get("/register"))

    assert "Create Account" in page
    for row in (0, 1):
        for name in ("name", "access_id", "access_password", "relationship"):
            assert f'name="students-{row}-{name}"' in page
    assert 'name="students-2-access_id"' not in page
    for label in ("First name", "Last name", "Email", "Desired username", "Password", "Re-enter password"):
        assert label in page
    for relationship in ("Mother", "Father", "Guardian", "Grandparent", "Stepparent", "Other"):
        assert f'<option value="{relationship}"' in page


def test_register_page_shows_the_password_requirements_before_typing(client: FlaskClient):
    page = text(client.get("/register"))

    assert 'id="password-requirements"' in page
    assert "Between 15 and 256 characters" in page


def test_signin_page_links_to_create_account(client: FlaskClient):
    page = text(client.get("/signin?request=abc"))

    assert re.search(r'<a href="/register\?request=abc">Create Account</a>', page)


def test_registration_creates_the_account_links_both_students_and_mails_a_link(
    client: FlaskClient, students: tuple[Student, Student], outbox: Path
):
    response = post_register(client, **{"students-1-name": "Not Adam"})

    assert response.status_code == 303
    assert response.headers["Location"].startswith("/register/done")
    (account,) = accounts()
    assert account.status is AccountStatus.PENDING
    linked = services().guardianship().linked_students(account)
    assert [(s.first_name, r) for s, r in linked] == [("Adam", "Mother"), ("Zoe", "Mother")]
    finish_reads()
    # Delivered on commit to the file outbox (no SMTP configured).
    (eml,) = outbox.glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["To"] == "dana@example.org"
    assert message["Subject"] == "Verify your email address"
    body = message.get_body(("plain",))
    assert body is not None
    link = re.search(r"http://localhost(/verify/\S+)", body.get_content())
    assert link

    verified = client.get(link.group(1))

    assert verified.status_code == 200
    assert "your email address is verified" in text(verified)
    (account,) = accounts()
    assert account.status is AccountStatus.CONFIRMED and account.email_verified_at is not None


def test_done_page_offers_to_sign_in_and_continue_the_authorization(client: FlaskClient):
    page = text(client.get("/register/done?request=req123"))

    assert "Your account has been created" in page
    assert 'href="/signin?request=req123"' in page


def test_invalid_verification_link_is_a_clear_400(client: FlaskClient):
    response = client.get("/verify/not-a-token")

    assert response.status_code == 400
    assert "This verification link is not valid" in text(response)


def test_new_account_may_sign_in_while_pending_by_default(client: FlaskClient, students):
    post_register(client)

    response = oidc.sign_in(client, "dana.rivera", PASSWORD)

    assert response.status_code == 303
    assert response.headers["Location"] == "/account"


def test_district_requiring_verification_keeps_a_pending_account_out(client: FlaskClient, students):
    post_register(client)
    DistrictOptionsService(db.session, defaults=DistrictOptions(), clock=services().clock).set(
        require_email_verification=True
    )
    db.session.commit()

    with client.application.app_context():
        response = oidc.sign_in(client, "dana.rivera", PASSWORD)

    assert response.status_code == 200
    page = text(response)
    assert "Verify your email address before you sign in" in page
    assert 'href="/verify/resend"' in page
    assert "idp_session" not in response.headers.get("Set-Cookie", "")


def test_resend_sends_a_new_link_and_answers_the_same_for_unknown_usernames(client: FlaskClient, students):
    post_register(client)
    with client.application.app_context():
        token = csrf_token(client.get("/verify/resend").get_data(as_text=True))
        known = client.post("/verify/resend", data={"csrf_token": token, "username": "Dana.Rivera"})
        unknown = client.post("/verify/resend", data={"csrf_token": token, "username": "nobody"})

    assert known.status_code == unknown.status_code == 200
    message = (
        "If that account is waiting for its email address to be verified, we have sent a new link to it."
    )
    assert message in text(known) and message in text(unknown)
    mails = db.session.execute(select(OutboundEmail.purpose)).scalars().all()
    finish_reads()
    assert mails == ["email_verification", "email_verification"]


def test_missing_csrf_token_is_refused_and_creates_nothing(client: FlaskClient, students):
    response = client.post("/register", data=registration_form())

    assert response.status_code == 400
    assert "This form has expired or did not come from this site" in text(response)
    assert accounts() == []


def test_resend_form_refuses_a_missing_csrf_token(client: FlaskClient, students):
    post_register(client)

    response = client.post("/verify/resend", data={"username": "dana.rivera"})

    assert response.status_code == 400
    assert count(OutboundEmail) == 1  # the registration's mail only
    finish_reads()


def test_wrong_csrf_token_is_refused(client: FlaskClient, students):
    client.get("/register")
    response = client.post("/register", data={"csrf_token": "forged", **registration_form()})

    assert response.status_code == 400
    assert accounts() == []


@pytest.mark.parametrize(
    "row",
    [
        {"students-1-access_password": "wrong"},
        {"students-1-access_id": "NO-SUCH-ID"},
    ],
    ids=["wrong password", "unknown Access ID"],
)
def test_wrong_access_credentials_show_a_row_error_and_create_nothing(client: FlaskClient, students, row):
    response = post_register(client, **row)

    assert response.status_code == 400
    page = text(response)
    # Once in the error summary at the top, once beside the row.
    assert page.count("The Access ID or Access Password is not correct.") == 2
    assert 'id="students-1-error"' in page
    assert accounts() == [] and count(GuardianLink) == 0
    finish_reads()
    # What was typed stays, except the passwords.
    assert 'value="dana.rivera"' in page
    assert PASSWORD not in page and "orchid-42" not in page


def test_duplicate_username_asks_for_another(client: FlaskClient, students, make_account):
    make_account(username="Dana.Rivera")

    response = post_register(client)

    assert response.status_code == 400
    assert "This username is already in use. Please choose another." in text(response)
    assert len(accounts()) == 1


@pytest.mark.parametrize("look_alike", ["d\u0430na.rivera", "DANA.RIVERA", "ｄａｎａ.rivera"])
def test_unicode_look_alike_of_a_username_is_taken(client: FlaskClient, students, make_account, look_alike):
    make_account(username="dana.rivera")

    response = post_register(client, username=look_alike)

    assert response.status_code == 400
    assert "This username is already in use. Please choose another." in text(response)


def test_mismatched_passwords(client: FlaskClient, students):
    response = post_register(client, password_confirm=PASSWORD + "x")

    assert response.status_code == 400
    assert "The verification password you enter must match the new password." in text(response)
    assert accounts() == []


def test_short_and_long_passwords(client: FlaskClient, students):
    short = post_register(client, password="too-short", password_confirm="too-short")
    long = post_register(client, password="p" * 257, password_confirm="p" * 257)

    assert "New password must be at least 15 characters long." in text(short)
    assert "New password must be at most 256 characters long." in text(long)
    assert accounts() == []


def test_a_school_policy_with_classic_rules_gives_every_message_at_once(client: FlaskClient, students):
    policies = PasswordPolicyService(db.session, hasher=services().hasher, clock=services().clock)
    policies.set_policy(
        "LES", min_length=8, require_upper_lower=True, require_letter_number=True, require_special=True
    )
    policies.set_policy("WMS", min_length=8)
    db.session.commit()

    response = post_register(client, password="abcdefg", password_confirm="abcdefh")

    page = text(response)
    for message in (
        "New password must be at least 8 characters long.",
        "New password must contain at least one uppercase and one lowercase letter.",
        "New password must contain at least one letter and one number.",
        "New password must contain at least one special character.",
        "The verification password you enter must match the new password.",
    ):
        assert message in page
    # The requirements shown now are those of the students' schools.
    assert "At least one special character." in page


def test_no_student_is_refused(client: FlaskClient, students):
    blank = {f"students-{i}-{f}": "" for i in (0, 1) for f in ("name", "access_id", "access_password")}

    response = post_register(client, **blank)

    assert response.status_code == 400
    assert "Add at least one student with their Access ID and Access Password." in text(response)
    assert accounts() == []


def test_a_third_row_added_by_a_script_is_linked_too(client: FlaskClient, students, make_student):
    make_student(
        sis_id="100310", first_name="Maya", last_name="Chen", access_id="MC-3", access_password="harbor-88"
    )

    response = post_register(
        client,
        **{
            "students-2-access_id": "MC-3",
            "students-2-access_password": "harbor-88",
            "students-2-relationship": "Guardian",
        },
    )

    assert response.status_code == 303
    (account,) = accounts()
    assert len(services().guardianship().linked_students(account)) == 3
    finish_reads()


@pytest.mark.parametrize(
    "field",
    ["first_name", "last_name", "email", "username", "password", "students-0-name", "students-0-access_id"],
)
def test_ten_thousand_character_fields_get_a_clear_message_and_no_account(
    client: FlaskClient, students, field
):
    response = post_register(client, **{field: "x" * 10_000})

    assert response.status_code == 400
    assert "Please correct the problems below." in text(response)
    assert accounts() == []


def test_ten_thousand_character_access_password_is_a_row_error(client: FlaskClient, students):
    response = post_register(client, **{"students-0-access_password": "x" * 10_000})

    assert response.status_code == 400
    assert "The Access ID or Access Password is not correct." in text(response)


def test_nul_and_control_characters_are_refused_cleanly(client: FlaskClient, students):
    response = post_register(
        client, username="dana\x00", first_name="Da\x00na", **{"students-0-access_id": "ZR\x00-1"}
    )

    assert response.status_code == 400
    assert accounts() == []


def test_access_checks_beyond_the_ip_limit_get_429(app: Flask, students, database_url: str, keys_dir: Path):
    from idp import create_app

    limited = create_app(
        settings_for_tests(database_url, keys_dir, rate_limit_register="2/hour"), clock=services().clock
    )
    limited.config["TESTING"] = True
    client = limited.test_client()
    with limited.app_context():
        page = client.get("/register")
        token = csrf_token(page.get_data(as_text=True))
        data = {
            "csrf_token": token,
            **registration_form(**{"students-0-access_password": "x", "students-1-access_password": "y"}),
        }
        client.post("/register", data=data)
        response = client.post("/register", data={"csrf_token": token, **registration_form()})
        db.session.remove()
        limited.extensions["sqlalchemy"].engine.dispose()

    assert response.status_code == 429
    assert "Retry-After" in response.headers


def test_create_account_shows_the_strictest_rules_of_any_school_before_anything_is_typed(
    client: FlaskClient, students
):
    policies = PasswordPolicyService(db.session, hasher=services().hasher, clock=services().clock)
    policies.set_policy("LES", min_length=20, history_count=5)
    policies.set_policy("WMS", min_length=8, require_special=True)
    db.session.commit()

    page = text(client.get("/register"))

    assert "Between 20 and 256 characters" in page
    assert "At least one special character." in page
    # A new account has no earlier passwords to avoid.
    assert "last 5 passwords" not in page and "Not your current password." not in page
    # Without JavaScript the page says these may be stricter than the students' schools need.
    assert 'id="password-rules-note"' in page
    assert "the strictest rules any school in the district can apply" in page


def test_once_the_access_ids_are_recognised_the_schools_rules_are_shown_without_history(
    client: FlaskClient, students
):
    policies = PasswordPolicyService(db.session, hasher=services().hasher, clock=services().clock)
    policies.set_policy("LES", min_length=20, history_count=5)
    db.session.commit()

    page = text(post_register(client, password="short", password_confirm="short"))

    assert "Between 20 and 256 characters" in page
    assert "last 5 passwords" not in page
    assert 'id="password-rules-note"' not in page


def test_an_error_keeps_what_was_typed_ties_errors_to_fields_and_leads_with_a_summary(
    client: FlaskClient, students, make_account
):
    make_account(username="dana.rivera")

    response = post_register(client, **{"students-1-access_password": "wrong"})

    assert response.status_code == 400
    page = text(response)
    # The summary comes first and takes focus; each item leads to its field.
    summary = page[page.index('id="error-summary"') - 60 :]
    assert 'role="alert" tabindex="-1" autofocus' in summary[:200]
    assert '<a href="#username">Desired username: ' in page
    assert '<a href="#students-1-access_id">Student 2: ' in page
    # Errors are tied to their fields.
    assert 'required aria-invalid="true" aria-describedby="username-errors"' in page
    assert 'id="username-errors"' in page
    assert 'aria-invalid="true" aria-describedby="students-1-error"' in page
    assert 'id="first_name" name="first_name"' in page and 'aria-describedby="first_name-errors"' not in page
    # Every non-secret value is kept; the secrets are not, and the page says which to type again.
    for kept in (
        'value="Dana"',
        'value="dana@example.org"',
        'value="dana.rivera"',
        'value="ZR-1"',
        'value="AR-2"',
    ):
        assert kept in page
    assert PASSWORD not in page and "orchid-42" not in page
    assert "type the password, the re-entered password and each Access Password again" in page
