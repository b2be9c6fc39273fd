"""A parent chooses Español on the sign-in page, creates an account and signs in, in real
Chromium, and reads no English on the way: only the names of people, the portal and the district.

The provider is real gunicorn (tests/e2e/conftest.py); the browser is Debian's Chromium.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import Browser, Route

from relying_party_demo import create_app
from relying_party_demo.config import PortalSettings
from tests.conftest import AuthRequest, redirect_params
from tests.e2e.conftest import (
    HTTP_TIMEOUT,
    District,
    Provider,
    create_student,
    free_port,
    provider_env,
)
from tests.e2e.portal import register_portal
from tests.e2e.spanish import english_on

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_backends("postgresql")]

STUDENT = ("LG-7310", "cedro-verde-61", "100377")
NEW_PASSWORD = "lantern-orchard-velvet-93"


@pytest.fixture(scope="module")
def student(district: District) -> str:
    env = provider_env(district.database_url, district.keys_dir, issuer="http://127.0.0.1")
    access_id, access_password, sis_id = STUDENT
    return create_student(
        env, sis_id, "Lucía", "Gómez", school="LES", access_id=access_id, access_password=access_password
    )


def test_a_parent_registers_and_signs_in_in_spanish_without_english(
    chromium: Browser, provider: Provider, district: District, student: str
) -> None:
    auth = AuthRequest(district.client_id, redirect_uri=district.redirect_uri)
    username = f"padre-{secrets.token_hex(3)}"
    callbacks: list[str] = []

    def portal_callback(route: Route) -> None:
        callbacks.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<p>portal</p>")

    # An English-speaking browser: the choice on the page is what makes it Spanish.
    context = chromium.new_context(locale="en-US")
    try:
        page = context.new_page()
        page.route(f"{district.redirect_uri}*", portal_callback)
        page.goto(auth.url(provider.url))
        assert page.locator("#languages").inner_text().split() == ["English", "Español"]
        page.click("#languages >> text=Español")
        page.wait_for_function("document.documentElement.lang === 'es'")
        assert "request=" in page.url  # the sign-in request survives the switch
        assert english_on(page) == []

        page.click("text=Crear cuenta")
        assert urlsplit(page.url).path == "/register"
        assert english_on(page) == []
        assert page.locator("label", has_text="ID de acceso").count() >= 1
        page.fill("#first_name", "Dana")
        page.fill("#last_name", "Okafor")
        page.fill("#email", f"{username}@example.org")
        page.fill("#username", username)
        page.fill("#password", NEW_PASSWORD)
        page.fill("#password_confirm", NEW_PASSWORD + "x")
        page.fill("#students-0-name", "Lucía")
        page.fill("#students-0-access_id", STUDENT[0])
        page.fill("#students-0-access_password", STUDENT[1])
        page.select_option("#students-0-relationship", label="Madre")
        page.click("button[type=submit]:has-text('Crear cuenta')")

        # A mistake: its message, and the page around it, in Spanish.
        page.wait_for_selector("text=debe coincidir con la nueva contraseña")
        assert english_on(page) == []
        page.fill("#password", NEW_PASSWORD)
        page.fill("#password_confirm", NEW_PASSWORD)
        if page.locator("#students-0-access_password").input_value() == "":
            page.fill("#students-0-access_password", STUDENT[1])
        page.click("button[type=submit]:has-text('Crear cuenta')")

        page.wait_for_url(f"{provider.url}/register/done*")
        assert english_on(page) == []
        page.click("a.button:has-text('Iniciar sesión')")
        page.wait_for_url(f"{provider.url}/signin?request=*")
        assert english_on(page) == []
        page.fill("#username", username)
        page.fill("#password", "not-the-password")
        page.click("button[type=submit]")
        page.wait_for_selector("text=Nombre de usuario o contraseña no válidos.")
        assert english_on(page) == []
        page.fill("#username", username)
        page.fill("#password", NEW_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{district.redirect_uri}*")
    finally:
        context.close()

    assert len(callbacks) == 1 and "code=" in callbacks[0]


def test_the_portal_asks_for_the_providers_pages_in_its_own_language(
    provider: Provider, district: District, tmp_path: Path
) -> None:
    client = register_portal(district, f"http://127.0.0.1:{free_port()}", backchannel=False)
    settings = PortalSettings(
        client_id=client.client_id,
        client_secret=client.client_secret,
        issuer=provider.url,
        base_url=client.base_url,
        secret_key="spanish-test-secret-key-that-is-long-enough-012",
        database_url=f"sqlite:///{tmp_path / 'portal.db'}",
    )
    portal = create_app(settings)
    try:
        browser = portal.test_client()
        assert browser.get("/?lang=es").status_code == 200
        authorize = browser.get("/login").headers["Location"]
    finally:
        portal.extensions["relying_party_demo"].engine.dispose()

    assert redirect_params(authorize)["ui_locales"] == "es"
    # An English-speaking browser without the provider's cookie: ui_locales alone makes it Spanish.
    with requests.Session() as http:
        signin = http.get(authorize, headers={"Accept-Language": "en-US"}, timeout=HTTP_TIMEOUT)
    assert '<html lang="es">' in signin.text and "Iniciar sesión" in signin.text
