"""/account: the Profile tab (name, email, username, password) and the Students tab, over HTTP."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from idp.accounts.district import DistrictOptions, DistrictOptionsService
from idp.accounts.models import Account
from idp.accounts.password_policy import PasswordPolicyService
from idp.config import Settings
from idp.extensions import db
from idp.mail.models import OutboundEmail
from idp.students.models import Student
from idp.web.context import services
from tests.conftest import PASSWORD, AuthRequest, csrf_token, settings_for_tests
from tests.functional import oidc
from tests.functional.test_code_flow import verify_id_token

NEW_PASSWORD = "lantern-orchard-velvet-93"


@pytest.fixture
def settings(database_url: str, keys_dir: Path) -> Settings:
    # The same settings for every test: one app for the module (mail goes to the session's folder).
    return settings_for_tests(database_url, keys_dir, lockout_threshold=3)


@pytest.fixture
def dana(make_account: Callable[..., Account], make_student: Callable[..., Student]) -> Account:
    account = make_account(
        username="dana.rivera", email="dana@example.org", first_name="Dana", last_name="Rivera"
    )
    zoe = make_student(
        sis_id="100234", first_name="Zoe", last_name="Rivera", access_id="ZR-1", access_password="orchid-42"
    )
    services().guardianship().link(account, zoe, "Mother")
    db.session.commit()
    return account


@pytest.fixture
def signed_in(client: FlaskClient, dana: Account) -> FlaskClient:
    with client.application.app_context():
        response = oidc.sign_in(client, "dana.rivera", PASSWORD)
    assert response.status_code == 303
    return client


def text(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def post(client: FlaskClient, page: str, path: str, **data: str) -> TestResponse:
    """Load ``page`` for its CSRF token, then post ``data`` to ``path``."""
    with client.application.app_context():
        token = csrf_token(client.get(page).get_data(as_text=True))
        return client.post(path, data={"csrf_token": token, **data})


def reload(account: Account) -> Account:
    db.session.expire_all()
    fresh = db.session.get(Account, account.id)
    assert fresh is not None
    db.session.commit()
    return fresh


def mails() -> list[tuple[str, str]]:
    rows = db.session.execute(select(OutboundEmail.to_address, OutboundEmail.purpose)).all()
    db.session.commit()
    return sorted((to, purpose) for to, purpose in rows)


def set_options(**options: Any) -> None:
    DistrictOptionsService(db.session, defaults=DistrictOptions(), clock=services().clock).set(**options)
    db.session.commit()


def test_account_needs_a_session(client: FlaskClient):
    response = client.get("/account")

    assert response.status_code == 303
    assert response.headers["Location"] == "/signin"


def test_profile_tab_shows_each_field_behind_its_own_edit(signed_in: FlaskClient):
    page = text(signed_in.get("/account"))

    assert "Account Preferences" in page
    for field in ("name", "email", "username", "password"):
        assert f'href="/account?edit={field}"' in page
    assert 'name="new_password"' not in page


def test_password_edit_shows_the_requirements_before_typing(signed_in: FlaskClient):
    page = text(signed_in.get("/account?edit=password"))

    assert 'name="current_password"' in page and 'name="new_password"' in page
    assert "Between 15 and 256 characters" in page


def test_change_name(signed_in: FlaskClient, dana: Account):
    response = post(
        signed_in, "/account?edit=name", "/account/name", first_name="Danielle", last_name="Rivera"
    )

    assert response.status_code == 303
    assert reload(dana).first_name == "Danielle"
    assert "Your name was saved." in text(signed_in.get("/account"))


def test_empty_or_ten_thousand_character_name_is_refused(signed_in: FlaskClient, dana: Account):
    empty = post(signed_in, "/account?edit=name", "/account/name", first_name="", last_name="Rivera")
    long = post(signed_in, "/account?edit=name", "/account/name", first_name="x" * 10_000, last_name="Rivera")

    assert empty.status_code == long.status_code == 400
    assert "Enter your first name." in text(empty)
    assert "This is too long." in text(long)
    assert reload(dana).first_name == "Dana"


def test_change_username_and_sign_in_with_it(client: FlaskClient, signed_in: FlaskClient, dana: Account):
    response = post(signed_in, "/account?edit=username", "/account/username", username="Dana.R")

    assert response.status_code == 303
    assert reload(dana).username == "Dana.R"
    with client.application.app_context():
        assert oidc.sign_in(client, "dana.r", PASSWORD).status_code == 303


def test_username_taken_or_look_alike_is_refused(signed_in: FlaskClient, dana: Account, make_account):
    make_account(username="pat")

    taken = post(signed_in, "/account?edit=username", "/account/username", username="PAT")
    look_alike = post(signed_in, "/account?edit=username", "/account/username", username="p\u0430t")

    for response in (taken, look_alike):
        assert response.status_code == 400
        assert "This username is already in use. Please choose another." in text(response)
    assert reload(dana).username == "dana.rivera"


def test_change_email_notifies_the_old_address_and_verifies_the_new(signed_in: FlaskClient, dana: Account):
    response = post(signed_in, "/account?edit=email", "/account/email", email="new@example.org")

    assert response.status_code == 303
    fresh = reload(dana)
    assert fresh.email == "new@example.org"
    assert fresh.email_verified_at is None
    assert mails() == [("dana@example.org", "email_changed"), ("new@example.org", "email_verification")]
    page = text(signed_in.get("/account"))
    assert "not verified yet" in page
    assert "Send the verification link again" in page


def test_invalid_email_is_refused(signed_in: FlaskClient, dana: Account):
    response = post(signed_in, "/account?edit=email", "/account/email", email="not-an-email")

    assert response.status_code == 400
    assert "Enter a valid email address" in text(response)
    assert reload(dana).email == "dana@example.org"


def test_district_may_forbid_email_changes(signed_in: FlaskClient, dana: Account):
    set_options(allow_email_change=False)

    assert 'href="/account?edit=email"' not in text(signed_in.get("/account"))
    response = post(signed_in, "/account", "/account/email", email="new@example.org")

    assert response.status_code == 403
    assert "does not allow changing the email address" in text(response)
    assert reload(dana).email == "dana@example.org"


def change_password(client: FlaskClient, current: str, new: str, confirm: str | None = None) -> TestResponse:
    return post(
        client,
        "/account?edit=password",
        "/account/password",
        current_password=current,
        new_password=new,
        confirm_password=new if confirm is None else confirm,
    )


def test_change_password_then_sign_in_with_the_new_one(
    client: FlaskClient, signed_in: FlaskClient, dana: Account
):
    response = change_password(signed_in, PASSWORD, NEW_PASSWORD)

    assert response.status_code == 303
    assert "Your password was changed." in text(signed_in.get("/account"))
    with client.application.app_context():
        assert oidc.sign_in(client, "dana.rivera", NEW_PASSWORD).status_code == 303


def test_wrong_current_password(signed_in: FlaskClient, dana: Account):
    response = change_password(signed_in, "not-the-password", NEW_PASSWORD)

    assert response.status_code == 400
    assert "Current password is not correct." in text(response)
    assert services().hasher.verify(reload(dana).password_hash, PASSWORD)


def test_wrong_current_passwords_count_against_the_sign_in_lockout(
    client: FlaskClient, signed_in: FlaskClient, dana: Account
):
    # The threshold of these tests is 3, counted against the username whatever device cookie the
    # browser holds (one budget per account).
    for _ in range(3):
        change_password(signed_in, "not-the-password", NEW_PASSWORD)

    locked = change_password(signed_in, PASSWORD, NEW_PASSWORD)

    assert locked.status_code == 429
    assert re.search(r"This account is locked because of too many failed sign-in attempts\.", text(locked))
    stranger = client.application.test_client()
    with client.application.app_context():
        signin = oidc.sign_in(stranger, "dana.rivera", PASSWORD)
    assert "This account is locked" in text(signin)


def test_every_password_message_at_once(signed_in: FlaskClient, dana: Account):
    response = change_password(signed_in, "wrong", "short", "other")

    page = text(response)
    assert "Current password is not correct." in page
    assert "New password must be at least 15 characters long." in page
    assert "The verification password you enter must match the new password." in page


def test_too_long_new_password(signed_in: FlaskClient, dana: Account):
    response = change_password(signed_in, PASSWORD, "p" * 257)

    assert "New password must be at most 256 characters long." in text(response)


def test_classic_school_rules_apply_to_the_accounts_password(signed_in: FlaskClient, dana: Account):
    PasswordPolicyService(db.session, hasher=services().hasher, clock=services().clock).set_policy(
        "LES", min_length=8, require_upper_lower=True, require_letter_number=True, require_special=True
    )
    db.session.commit()

    assert "At least one uppercase and one lowercase letter." in text(signed_in.get("/account?edit=password"))
    response = change_password(signed_in, PASSWORD, "abcdefgh")

    page = text(response)
    for message in (
        "New password must contain at least one uppercase and one lowercase letter.",
        "New password must contain at least one letter and one number.",
        "New password must contain at least one special character.",
    ):
        assert message in page
    assert "New password must be at least" not in page


def test_previously_used_passwords_may_not_be_reused(signed_in: FlaskClient, dana: Account):
    PasswordPolicyService(db.session, hasher=services().hasher, clock=services().clock).set_policy(
        "LES", history_count=3
    )
    db.session.commit()
    second, third = NEW_PASSWORD, "velvet-lantern-orchard-94"
    assert change_password(signed_in, PASSWORD, second).status_code == 303
    assert change_password(signed_in, second, third).status_code == 303

    for used in (third, second, PASSWORD):
        response = change_password(signed_in, third, used)
        assert response.status_code == 400
        assert "The password entered was previously used. Please enter a new password." in text(response)
    assert change_password(signed_in, third, "fourth-brand-new-passphrase").status_code == 303


def test_district_may_forbid_password_changes(signed_in: FlaskClient, dana: Account):
    set_options(allow_password_change=False)

    response = change_password(signed_in, PASSWORD, NEW_PASSWORD)

    assert response.status_code == 403
    assert services().hasher.verify(reload(dana).password_hash, PASSWORD)


@pytest.mark.parametrize(
    "path",
    [
        "/account/name",
        "/account/email",
        "/account/username",
        "/account/password",
        "/account/students",
        "/account/students/primary",
        "/account/verification",
    ],
)
def test_every_preferences_form_refuses_a_missing_csrf_token(
    signed_in: FlaskClient, dana: Account, path: str
):
    response = signed_in.post(path, data={"first_name": "X", "email": "x@example.org", "username": "x"})

    assert response.status_code == 400
    assert "This form has expired or did not come from this site" in text(response)
    assert reload(dana).first_name == "Dana"


# --- Students tab -------------------------------------------------------------------------
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


def add_student(client: FlaskClient, **fields: str) -> TestResponse:
    values = {"name": "Adam", "access_id": "AR-2", "access_password": "comet-17", "relationship": "Mother"}
    values.update(fields)
    return post(client, "/account/students", "/account/students", **values)


def test_students_tab_lists_linked_students(signed_in: FlaskClient):
    page = text(signed_in.get("/account/students"))

    assert "Zoe Rivera" in page and "Mother" in page
    assert 'name="access_id"' in page and 'name="access_password"' in page


def test_add_a_student_by_access_id(signed_in: FlaskClient, adam: Student):
    response = add_student(signed_in, name="whatever was typed")

    assert response.status_code == 303
    page = text(signed_in.get("/account/students"))
    assert "Adam Rivera is now linked to your account." in page
    assert "Adam Rivera" in page


@pytest.mark.parametrize("fields", [{"access_password": "wrong"}, {"access_id": "NOPE"}])
def test_wrong_access_credentials_on_the_students_tab(signed_in: FlaskClient, adam: Student, fields):
    response = add_student(signed_in, **fields)

    assert response.status_code == 400
    assert "The Access ID or Access Password is not correct." in text(response)
    assert "Adam Rivera" not in text(signed_in.get("/account/students"))


def test_adding_an_already_linked_student_says_so(signed_in: FlaskClient):
    response = add_student(signed_in, access_id="ZR-1", access_password="orchid-42")

    assert response.status_code == 400
    assert "This student is already linked to your account." in text(response)


def test_choose_the_primary_student(signed_in: FlaskClient, dana: Account, adam: Student):
    add_student(signed_in)

    response = post(signed_in, "/account/students", "/account/students/primary", student=adam.id)

    assert response.status_code == 303
    assert reload(dana).primary_student_id == adam.id


def test_primary_student_must_be_a_linked_one(signed_in: FlaskClient, dana: Account, adam: Student):
    response = post(signed_in, "/account/students", "/account/students/primary", student=adam.id)

    assert response.status_code == 400
    assert reload(dana).primary_student_id != adam.id


def test_a_new_link_shows_in_the_next_id_token(signed_in: FlaskClient, adam: Student, make_client):
    portal = make_client()
    add_student(signed_in, relationship="Father")
    post(signed_in, "/account/students", "/account/students/primary", student=adam.id)

    auth = AuthRequest(portal.client_id)
    with signed_in.application.app_context():
        code = oidc.authorize_as(signed_in, auth, "dana.rivera")["code"]
        tokens = oidc.redeem(signed_in, auth, code, portal.client_secret).get_json()
        claims = verify_id_token(signed_in, tokens["id_token"], client_id=portal.client_id).claims

    assert claims["student_ids"] == ["100235", "100234"]
    assert [(s["given_name"], s["relationship"]) for s in claims["students"]] == [
        ("Adam", "Father"),
        ("Zoe", "Mother"),
    ]
    assert claims["primary_student_id"] == "100235"


def test_the_current_password_is_not_a_new_one_even_without_a_history_rule(
    signed_in: FlaskClient, dana: Account
):
    response = change_password(signed_in, PASSWORD, PASSWORD)

    assert response.status_code == 400
    assert "The password entered was previously used. Please enter a new password." in text(response)


def test_the_verification_after_an_email_change_says_so_and_every_mail_names_the_district(
    client: FlaskClient, dana: Account
):
    set_options(name="Lakeside Unified")
    link = "https://sign-in.example.org/verify/" + "x" * 300
    composer = services().composer
    changed = composer.compose("email_verification", dana, link=link, days=3, after_change=True)
    new = composer.compose("email_verification", dana, link=link, days=3)

    assert "If you did not create this account" not in changed.text + changed.html
    assert "This address was just given for an existing account." in changed.text
    assert "If you did not create this account, you can ignore this message." in new.text
    for composed in (changed, new, composer.compose("password_changed", dana, others_signed_out=False)):
        assert composed.text.endswith("-- \nLakeside Unified\n")
        assert "Lakeside Unified" in composed.html
        # A long link wraps inside the card instead of running out of it.
        assert "overflow-wrap:anywhere" in composed.html
