"""A Spanish-speaking family's other days, in real Chromium against real gunicorn: a lockout, a
forgotten username and password (the mail read from a real SMTP server), Account Preferences, the
demo portal, and a broken link from a portal. No page shows an English word outside the names of
people, schools, portals and the district; dates are written the Spanish way, in the district's
time zone.

The browser asks for Spanish (``Accept-Language: es-ES``) and never chooses a language itself;
the mail is in Spanish because the account chose Spanish in Account Preferences.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_date, format_time, get_day_names, get_month_names
from playwright.sync_api import Browser, BrowserContext, Page

from tests.e2e.conftest import (
    District,
    Provider,
    ProviderPool,
    create_student,
    free_port,
    provider_env,
    run_idp,
    wait_until_ready,
)
from tests.e2e.portal import launch_portal, portal_env, register_portal
from tests.e2e.spanish import english_in, english_on
from tests.smtp import Inbox, link_in, smtp_server, text_of

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_backends("postgresql")]

PASSWORD = "ciruela-faro-brisa-47"
NEW_PASSWORD = "almendro-velero-nube-82"
# Not UTC, so that a date in the wrong zone can show: the district's and the portal's zone.
ZONE = "America/Mexico_City"
LOCK_MINUTES = 5
MAIL_TIMEOUT = 30.0


@dataclass(frozen=True)
class Kid:
    sis_id: str
    first_name: str
    school: str
    access_id: str
    access_password: str


@dataclass(frozen=True)
class SpanishSite:
    provider: Provider
    portal_url: str
    env: dict[str, str]  # the operator's commands, for this provider and its SMTP server
    inbox: Inbox
    marta: Kid  # linked when each parent is created
    tomas: Kid  # added in Account Preferences


@pytest.fixture(scope="module")
def site(district: District, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpanishSite]:
    """A provider (mail to a real SMTP server) and the demo portal, both in the Mexico City zone."""
    tag = secrets.token_hex(3)
    marta = Kid(f"7{tag}1", "Marta", "WMS", f"MN-{tag}-1", "girasol-lento-35")
    tomas = Kid(f"7{tag}2", "Tomás", "LES", f"TN-{tag}-2", "pelicano-rojo-64")
    folder = tmp_path_factory.mktemp("spanish")
    pool = ProviderPool(folder)
    with smtp_server() as (inbox, smtp_port):
        smtp_url = f"smtp://127.0.0.1:{smtp_port}"
        try:
            (provider,) = pool.start(
                district.database_url,
                district.keys_dir,
                workers=1,
                threads=4,
                IDP_SMTP_URL=smtp_url,
                IDP_TIMEZONE=ZONE,
                IDP_LOCKOUT_SECONDS=str(LOCK_MINUTES * 60),
                IDP_REDIS_KEY_PREFIX=f"idp-e2e-spanish:{tag}:",
            )
            env = provider_env(
                district.database_url, district.keys_dir, issuer=provider.url, IDP_SMTP_URL=smtp_url
            )
            for kid in (marta, tomas):
                create_student(
                    env,
                    kid.sis_id,
                    kid.first_name,
                    "Navarro",
                    school=kid.school,
                    access_id=kid.access_id,
                    access_password=kid.access_password,
                )
            port = free_port()
            client = register_portal(district, f"http://127.0.0.1:{port}")
            portal = launch_portal(
                portal_env(provider.url, client, f"sqlite:///{folder / 'portal.db'}", RP_TIMEZONE=ZONE),
                port,
                folder / "gunicorn-portal.log",
                workers=1,
            )
            try:
                wait_until_ready([portal])
                yield SpanishSite(provider, portal.url, env, inbox, marta, tomas)
            finally:
                portal.wait_stopped(portal.terminate())
        finally:
            pool.stop_all()


def make_parent(site: SpanishSite, first_name: str = "Inés") -> tuple[str, str]:
    """A parent linked to Marta as her mother, made by the operator; return username and email."""
    username = f"ines-{secrets.token_hex(3)}"
    email = f"{username}@example.org"
    run_idp(
        site.env,
        *("accounts", "create", "--username", username, "--email", email, "--password", PASSWORD),
        *("--first-name", first_name, "--last-name", "Navarro", "--link", f"{site.marta.sis_id}:Mother"),
    )
    return username, email


@pytest.fixture
def spanish(chromium: Browser) -> Iterator[BrowserContext]:
    """A browser that asks for Spanish pages, as a Spanish-speaking family's computer does."""
    context = chromium.new_context(locale="es-ES")
    try:
        yield context
    finally:
        context.close()


def sign_in(page: Page, site: SpanishSite, username: str) -> None:
    page.goto(f"{site.provider.url}/signin")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")
    page.wait_for_url(f"{site.provider.url}/account*")


def submit(page: Page, selector: str) -> None:
    """Click ``selector`` (a form's button, or a link) and wait for the page it leads to."""
    with page.expect_navigation():
        page.click(selector)


def shows(page: Page, text: str) -> bool:
    return text in page.inner_text("main")


def no_english(page: Page) -> None:
    page.wait_for_load_state("load")  # never read a document that a navigation is replacing
    assert page.evaluate("document.documentElement.lang") == "es"
    assert english_on(page) == []


def received(site: SpanishSite, address: str, count: int) -> list[EmailMessage]:
    """Run ``idp worker --once`` until ``count`` mails reached ``address``; return them."""
    deadline = time.monotonic() + MAIL_TIMEOUT
    while len(site.inbox.to(address)) < count:
        assert time.monotonic() < deadline, f"no mail to {address} within {MAIL_TIMEOUT:.0f} s"
        run_idp(site.env, "worker", "--once")
    return site.inbox.to(address)


def read_mail(message: EmailMessage, *names: str) -> str:
    """The subject and both bodies as a person reads them, without ``names`` (a username, a link)."""
    html = message.get_body(preferencelist=("html",))
    shown = re.sub(
        r"<(style|head)\b.*?</\1>|<[^>]+>", " ", str(html.get_content()) if html else "", flags=re.S
    )
    text = f"{message['Subject']}\n{text_of(message)}\n{shown}"
    for name in names:
        text = text.replace(name, " ")
    return text


def spanish_dates_today() -> set[str]:
    """Today in the district's zone, in Spanish's long form ("7 de diciembre de 2026").

    Two values when the test runs across midnight there.
    """
    now = datetime.now(UTC)
    zone = ZoneInfo(ZONE)
    return {
        format_date(moment.astimezone(zone).date(), "long", locale="es")
        for moment in (now - timedelta(minutes=5), now)
    }


# --- a lockout ----------------------------------------------------------------------------
def test_a_locked_account_is_told_in_spanish_with_the_minutes_plural(
    spanish: BrowserContext, site: SpanishSite
) -> None:
    username, _ = make_parent(site)
    page = spanish.new_page()
    page.goto(f"{site.provider.url}/signin")
    no_english(page)
    for attempt in range(1, 11):
        page.fill("#username", username)
        page.fill("#password", f"not-the-password-{attempt}")
        submit(page, "button[type=submit]")
        if attempt < 10:
            assert shows(page, "Nombre de usuario o contraseña no válidos.")
            no_english(page)
    # Locked: the right password gets the same answer, in minutes rounded up, in the plural.
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    submit(page, "button[type=submit]")
    assert shows(
        page,
        "Esta cuenta está bloqueada por demasiados intentos fallidos de inicio de sesión. "
        f"Vuelva a intentarlo en {LOCK_MINUTES} minutos.",
    )
    assert urlsplit(page.url).path == "/signin"
    no_english(page)


def test_a_forced_password_change_and_signing_out_are_spanish(
    spanish: BrowserContext, site: SpanishSite
) -> None:
    username = f"ines-{secrets.token_hex(3)}"
    run_idp(
        site.env,
        *("accounts", "create", "--username", username, "--email", f"{username}@example.org"),
        *("--password", PASSWORD, "--first-name", "Inés", "--last-name", "Navarro", "--temporary"),
    )
    page = spanish.new_page()
    page.goto(f"{site.provider.url}/signin")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")
    page.wait_for_url(f"{site.provider.url}/signin/change-password*")
    no_english(page)
    page.fill("#current_password", PASSWORD)
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#confirm_password", NEW_PASSWORD + "x")
    submit(page, "main button[type=submit]")
    assert shows(page, "debe coincidir con la nueva contraseña")
    no_english(page)
    page.fill("#current_password", PASSWORD)
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#confirm_password", NEW_PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{site.provider.url}/account*")
    no_english(page)
    # A sign-out asked for without a portal's token asks first.
    page.goto(f"{site.provider.url}/logout")
    no_english(page)
    submit(page, "main button[type=submit]")
    no_english(page)


# --- a forgotten username and password -------------------------------------------------------
def test_a_parent_recovers_username_and_password_in_spanish_from_spanish_mail(
    spanish: BrowserContext, site: SpanishSite
) -> None:
    username, email = make_parent(site)
    page = spanish.new_page()
    # The parent chose Spanish for the pages and the mail, in Account Preferences.
    sign_in(page, site, username)
    page.select_option("#language", "es")
    submit(page, "#profile-language button[type=submit]")
    no_english(page)
    submit(page, "main button:has-text('Cerrar sesión')")

    page.goto(f"{site.provider.url}/signin")
    page.click("text=¿Tiene problemas para iniciar sesión?")
    page.wait_for_url(f"{site.provider.url}/signin/trouble*")
    no_english(page)

    # Forgot Username: the mail names the username, in Spanish.
    page.click("nav.tabs a:nth-child(2)")
    page.wait_for_selector("#forgot-username")
    no_english(page)
    page.fill("#fu-email", email)
    submit(page, "#forgot-username button[type=submit]")
    no_english(page)
    (reminder,) = received(site, email, 1)
    assert username in text_of(reminder)
    reminder_text = read_mail(reminder, username, email)
    assert english_in(reminder_text) == [], reminder_text

    # Forgot Password: a link by mail, the Recover Password page, a mistake, then a new password.
    page.goto(f"{site.provider.url}/signin/trouble")
    page.fill("#fp-username", username)
    page.fill("#fp-email", email)
    submit(page, "#forgot-password button[type=submit]")
    no_english(page)
    _, reset_mail = received(site, email, 2)
    link = link_in(reset_mail, f"{site.provider.url}/reset/")
    reset_text = read_mail(reset_mail, link, username, email)
    assert english_in(reset_text) == [], reset_text

    page.goto(link)
    assert page.inner_text("h1") == "Recuperar contraseña"
    no_english(page)
    page.fill("#username", username)
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#confirm_password", NEW_PASSWORD + "x")
    submit(page, "main button[type=submit]")
    assert shows(page, "debe coincidir con la nueva contraseña")
    no_english(page)
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#confirm_password", NEW_PASSWORD)
    page.click("main button[type=submit]")
    # Signed in afresh, on Account Preferences.
    page.wait_for_url(f"{site.provider.url}/account*")
    no_english(page)
    assert any(today in page.inner_text("#profile-password") for today in spanish_dates_today())


# --- Account Preferences ---------------------------------------------------------------------
def test_account_preferences_are_spanish_through_profile_password_students_devices_and_data(
    spanish: BrowserContext, site: SpanishSite
) -> None:
    username, _ = make_parent(site)
    page = spanish.new_page()
    sign_in(page, site, username)
    no_english(page)

    # Profile: a new last name.
    submit(page, "#profile-name a")
    page.fill("#last_name", "Navarro Ruiz")
    submit(page, "#profile-name button[type=submit]")
    assert "Inés Navarro Ruiz" in page.inner_text("#profile-name")
    no_english(page)

    # Password: the current one again is refused, in Spanish; a wrong current one too.
    submit(page, "#profile-password a")
    no_english(page)
    page.fill("#current_password", PASSWORD)
    page.fill("#new_password", PASSWORD)
    page.fill("#confirm_password", PASSWORD)
    submit(page, "#profile-password button[type=submit]")
    refused = page.inner_text("#password-errors")
    assert "contraseña" in refused and english_in(refused) == [], refused
    no_english(page)
    page.fill("#current_password", "not-my-password")
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#confirm_password", NEW_PASSWORD)
    submit(page, "#profile-password button[type=submit]")
    assert "La contraseña actual no es correcta." in page.inner_text("#password-errors")
    no_english(page)
    page.fill("#current_password", PASSWORD)
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#confirm_password", NEW_PASSWORD)
    submit(page, "#profile-password button[type=submit]")
    no_english(page)
    # The change's date: the Spanish long form, in the district's zone.
    assert any(today in page.inner_text("#profile-password") for today in spanish_dates_today())

    # Students: the relationship label translated, a wrong Access Password, then the right one.
    page.click("ul.tabs li:nth-child(2) a")
    page.wait_for_url(f"{site.provider.url}/account/students")
    assert "Madre" in page.inner_text("#linked-students")
    no_english(page)
    labels = page.locator("#relationship option").all_inner_texts()
    assert {"Madre", "Padre"} <= set(labels), labels
    page.fill("#name", site.tomas.first_name)
    page.fill("#access_id", site.tomas.access_id)
    page.fill("#access_password", "not-the-access-password")
    page.select_option("#relationship", label="Padre")
    submit(page, "button[type=submit]:has-text('Agregar')")
    assert shows(page, "El ID de acceso o la Contraseña de acceso no es correcto.")
    no_english(page)
    page.fill("#access_id", site.tomas.access_id)
    page.fill("#access_password", site.tomas.access_password)
    page.select_option("#relationship", label="Padre")
    submit(page, "button[type=submit]:has-text('Agregar')")
    rows = page.locator("#linked-students tr", has_text="Tomás")
    assert "Padre" in rows.inner_text()
    no_english(page)

    # Change a relationship, and remove a student: the pages only, then Cancel.
    page.click("#relationship-1")
    page.wait_for_url("**/relationship")
    no_english(page)
    page.click("text=Cancelar")
    page.click("#remove-1")
    page.wait_for_url("**/remove")
    no_english(page)
    page.click("text=Cancelar")
    page.wait_for_url(f"{site.provider.url}/account/students")

    # Devices and data: this device, when it was last seen (Spanish, the district's zone).
    page.click("ul.tabs li:nth-child(3) a")
    page.wait_for_url(f"{site.provider.url}/account/devices")
    no_english(page)
    assert page.locator("#devices tr", has_text="este dispositivo").count() == 1
    seen = page.locator("#devices tr", has_text="este dispositivo").locator("td").nth(2).inner_text()
    months = set(get_month_names("abbreviated", locale="es").values())
    assert any(month in seen for month in months), seen
    assert english_in(seen) == []

    # Delete the account: the confirmation page, not confirmed.
    page.click("#delete-account")
    page.wait_for_url(f"{site.provider.url}/account/delete")
    no_english(page)
    page.click("text=Cancelar")
    page.wait_for_url(f"{site.provider.url}/account/devices")


# --- the demo portal -------------------------------------------------------------------------
def portal_sign_in(page: Page, site: SpanishSite, username: str) -> None:
    page.goto(f"{site.portal_url}/")
    no_english(page)
    page.click("#sign-in")
    page.wait_for_url(f"{site.provider.url}/signin?request=*")
    no_english(page)
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")
    page.wait_for_url(f"{site.portal_url}/")


def test_the_portal_is_spanish_with_a_spanish_previous_sign_in(
    spanish: BrowserContext, site: SpanishSite
) -> None:
    username, _ = make_parent(site)
    page = spanish.new_page()
    started = datetime.now(UTC)
    portal_sign_in(page, site, username)
    finished = datetime.now(UTC)
    no_english(page)
    first = page.inner_text("#previous-sign-in")
    assert page.locator("a.tab").all_inner_texts() == ["Marta"]
    page.click("a.help")
    page.wait_for_url(f"{site.portal_url}/help")
    no_english(page)
    page.goto(f"{site.portal_url}/students/{site.marta.sis_id}")
    no_english(page)
    page.goto(f"{site.portal_url}/students/{site.marta.sis_id}/print")
    no_english(page)
    page.goto(f"{site.portal_url}/")
    page.click("header button:has-text('Cerrar sesión')")
    page.wait_for_url(f"{site.portal_url}/?state=*")
    no_english(page)

    # The second sign-in shows the first one: the Spanish way, in the district's zone.
    portal_sign_in(page, site, username)
    again = page.inner_text("#previous-sign-in")
    assert again != first
    days = "|".join(get_day_names("wide", locale="es").values())
    months = "|".join(get_month_names("wide", locale="es").values())
    assert re.search(rf"({days}).*\d{{1,2}} de ({months}) de \d{{4}}", again, re.IGNORECASE), again
    # The first sign-in's time of day, as a clock in Mexico City showed it (not UTC's).
    minutes = {
        started + timedelta(minutes=m) for m in range(int((finished - started).total_seconds() // 60) + 2)
    }
    shown = {format_time(m.astimezone(ZoneInfo(ZONE)), "short", locale="es") for m in minutes}
    assert any(time_of_day in again for time_of_day in shown), (again, shown)
    assert english_in(again) == []
    no_english(page)


# --- a broken link from a portal -------------------------------------------------------------
def test_an_authorization_error_page_is_spanish(spanish: BrowserContext, site: SpanishSite) -> None:
    page = spanish.new_page()
    for query in (
        "client_id=no-such-portal&response_type=code&scope=openid&redirect_uri=https%3A%2F%2Fx.example%2Fcb",
        "response_type=code&scope=openid",
    ):
        response = page.goto(f"{site.provider.url}/authorize?{query}")
        assert response is not None and response.status == 400
        no_english(page)
    for path in ("/no-such-page", "/reset/not-a-real-token"):
        page.goto(f"{site.provider.url}{path}")
        no_english(page)
