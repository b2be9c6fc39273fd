"""Spanish on the provider's pages and in its mail: ``?lang=``, the cookie, ``ui_locales``,
Accept-Language, the account's own language in Account Preferences, and dates in the district's
time zone."""

from __future__ import annotations

import email
import email.policy
import html
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from idp.accounts.models import Account
from idp.audit import AuditEvent
from idp.config import Settings
from idp.extensions import db
from idp.mail.compose import TemplateComposer
from idp.students.models import Student
from idp.web.context import services
from tests.conftest import PASSWORD, AuthRequest, csrf_token, settings_for_tests
from tests.functional import oidc
from tests.functional.test_consent_and_prompts import signin_request_id

NEW_PASSWORD = "lantern-orchard-velvet-93"


@pytest.fixture
def settings(database_url: str, keys_dir: Path, outbox: Path) -> Settings:
    return settings_for_tests(database_url, keys_dir, smtp_url=f"file://{outbox}")


@pytest.fixture
def zoe(make_student: Callable[..., Student]) -> Student:
    return make_student(
        sis_id="100234", first_name="Zoe", last_name="Rivera", access_id="ZR-1", access_password="orchid-42"
    )


@pytest.fixture
def dana(make_account: Callable[..., Account], zoe: Student) -> Account:
    account = make_account(
        username="dana.rivera", email="dana@example.org", first_name="Dana", last_name="Rivera"
    )
    services().guardianship().link(account, zoe, "Mother")
    db.session.commit()
    return account


def text(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def reload(account: Account) -> Account:
    db.session.expire_all()
    fresh = db.session.get(Account, account.id)
    assert fresh is not None
    db.session.commit()
    return fresh


# --- choosing the language ------------------------------------------------------------------
def test_the_default_languages_are_english_and_spanish() -> None:
    assert Settings.from_env({}).languages == ("en", "es")


def test_lang_in_the_query_shows_spanish_and_is_remembered(client: FlaskClient) -> None:
    chosen = client.get("/signin?lang=es")
    page = text(chosen)
    later = text(client.get("/signin/trouble"))

    assert '<html lang="es">' in page
    assert "<h1>Iniciar sesión</h1>" in page
    assert "¿Tiene problemas para iniciar sesión?" in page
    assert "Crear cuenta" in page and "Sign In" not in page
    # The selector names each language in itself, whatever the page's language.
    assert 'href="?lang=en">English</a>' in page
    assert '<span lang="es" aria-current="true">Español</span>' in page
    assert "idp_lang=es" in chosen.headers["Set-Cookie"]
    assert '<html lang="es">' in later and "Having trouble" not in later


def test_the_language_cookie_is_honoured(client: FlaskClient) -> None:
    client.set_cookie("idp_lang", "es")
    page = text(client.get("/register"))

    assert "Crear cuenta" in page
    assert "ID de acceso" in page and "Contraseña de acceso" in page
    assert "Access ID" not in page and "Access Password" not in page
    # Relationship labels are shown in Spanish; the value sent stays the district's label.
    assert '<option value="Mother" >Madre</option>' in page


def test_an_unknown_language_in_the_query_or_cookie_is_ignored(client: FlaskClient) -> None:
    client.set_cookie("idp_lang", "xx")
    response = client.get("/signin?lang=fr")
    assert '<html lang="en">' in text(response)
    assert "idp_lang" not in response.headers.get("Set-Cookie", "")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [("es-MX,es;q=0.9,en;q=0.5", "es"), ("en-US,en;q=0.9", "en"), ("fr-CA", "en"), ("", "en")],
)
def test_accept_language_picks_the_pages_language(client: FlaskClient, accept: str, expected: str) -> None:
    page = text(client.get("/signin/trouble", headers={"Accept-Language": accept} if accept else {}))
    assert f'<html lang="{expected}">' in page
    assert ("Volver a iniciar sesión" in page) is (expected == "es")


def test_ui_locales_shows_the_sign_in_page_in_spanish(
    client: FlaskClient, make_client: Callable[..., Any]
) -> None:
    portal = make_client()
    auth = AuthRequest(portal.client_id, extra={"ui_locales": "es-MX en"})
    request_id = signin_request_id(client.get(auth.url(), headers={"Accept-Language": "en"}))

    page = text(client.get(f"/signin?request={request_id}", headers={"Accept-Language": "en"}))

    assert '<html lang="es">' in page
    assert "Nombre de usuario o correo electrónico" in page and "Username or email" not in page


def test_errors_and_password_messages_are_spanish(client: FlaskClient, dana: Account) -> None:
    client.set_cookie("idp_lang", "es")
    with client.application.app_context():
        token = csrf_token(client.get("/signin").get_data(as_text=True))
        refused = client.post(
            "/signin", data={"csrf_token": token, "username": "dana.rivera", "password": "x"}
        )
        missing = client.get("/no-such-page")

    assert "Nombre de usuario o contraseña no válidos." in text(refused)
    assert missing.status_code == 404 and "Esta página no existe." in text(missing)


# --- the account's language: registration, Account Preferences, mail -----------------------
def test_an_account_created_in_spanish_gets_its_mail_in_spanish(
    client: FlaskClient, zoe: Student, outbox: Path
) -> None:
    client.set_cookie("idp_lang", "es")
    form = {
        "first_name": "Dana",
        "last_name": "Rivera",
        "email": "dana@example.org",
        "username": "dana.rivera",
        "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD + "x",
        "students-0-name": "Zoe",
        "students-0-access_id": "ZR-1",
        "students-0-access_password": "orchid-42",
        "students-0-relationship": "Mother",
    }
    with client.application.app_context():
        token = csrf_token(client.get("/register").get_data(as_text=True))
        mismatch = client.post("/register", data={"csrf_token": token, **form})
        created = client.post(
            "/register", data={"csrf_token": token, **form, "password_confirm": NEW_PASSWORD}
        )

    assert "La contraseña de verificación que escriba debe coincidir con la nueva contraseña." in text(
        mismatch
    )
    assert created.status_code == 303
    account = db.session.scalars(select(Account).where(Account.username == "dana.rivera")).one()
    db.session.commit()
    assert account.locale == "es"
    (eml,) = outbox.glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "Verifique su correo electrónico"
    plain = message.get_body(("plain",))
    assert plain is not None
    assert "Confirme que dana@example.org es el correo electrónico" in plain.get_content()


def test_account_preferences_sets_the_accounts_language(client: FlaskClient, dana: Account) -> None:
    with client.application.app_context():
        assert oidc.sign_in(client, "dana.rivera", PASSWORD).status_code == 303
        page = client.get("/account").get_data(as_text=True)
        token = csrf_token(page)
        saved = client.post("/account/language", data={"csrf_token": token, "language": "es"})
        after = text(client.get("/account"))

    assert 'id="profile-language"' in page
    assert saved.status_code == 303 and "idp_lang=es" in saved.headers["Set-Cookie"]
    assert reload(dana).locale == "es"
    assert "Se guardó su idioma." in after and "Preferencias de la cuenta" in after
    events = db.session.scalars(
        select(AuditEvent).where(AuditEvent.account_id == dana.id, AuditEvent.name == "profile.changed")
    ).all()
    db.session.commit()
    assert [event.details.get("field") for event in events] == ["language"]


def test_a_language_not_offered_is_refused_and_nothing_changes(client: FlaskClient, dana: Account) -> None:
    with client.application.app_context():
        assert oidc.sign_in(client, "dana.rivera", PASSWORD).status_code == 303
        token = csrf_token(client.get("/account").get_data(as_text=True))
        refused = client.post("/account/language", data={"csrf_token": token, "language": "fr"})
        empty = client.post("/account/language", data={"csrf_token": token, "language": ""})

    assert refused.status_code == 400 and "This value is not valid." in text(refused)
    assert empty.status_code == 400 and "This field is required." in text(empty)
    assert reload(dana).locale is None


def test_mail_dates_are_in_the_district_time_zone_and_the_accounts_language(dana: Account) -> None:
    dana.locale = "es"
    dana.password_changed_at = datetime(2026, 12, 7, 15, 30, tzinfo=UTC)
    composer = TemplateComposer(timezone="America/Chicago")

    composed = composer.compose("password_changed", dana)

    assert composed.subject == "Se cambió su contraseña"
    # 15:30 UTC is 09:30 in Chicago (CST), written the Spanish way.
    assert "7 de diciembre de 2026" in composed.text and "9:30:00" in composed.text
    assert "Hola, Dana Rivera:" in composed.text
