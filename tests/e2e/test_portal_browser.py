"""The demo portal and the provider, both under gunicorn, driven by real headless Chromium.

A parent registers on the provider with two students typed out of alphabetical order, signs in
through the portal, finds the tabs sorted, switches tabs, downloads and prints, signs out, and is
signed out at the provider too. Then, over plain HTTP: a sign-out at the provider reaches the
portal through the back channel, and a forged logout token does not.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey
from playwright.sync_api import Browser, Page

from idp.clock import SystemClock
from idp.keys.ring import KeyRing
from relying_party_demo.students import MIDDLE
from relying_party_demo.tokens import BACKCHANNEL_EVENT
from tests.conftest import csrf_token
from tests.e2e.conftest import (
    ARTIFACTS,
    HTTP_TIMEOUT,
    District,
    Provider,
    create_student,
    free_port,
    provider_env,
    wait_until_ready,
)
from tests.e2e.flows import continue_authorization, describe, fetch_json, sign_in, start_authorization
from tests.e2e.portal import PortalClient, launch_portal, portal_env, register_portal

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_backends("postgresql")]

NOT_AVAILABLE = "Student information is not available at this time."
PASSWORD = "juniper-compass-meadow-58"


@dataclass(frozen=True)
class Kid:
    sis_id: str
    first_name: str
    school: str
    access_id: str
    access_password: str


# Typed into the form in this order: Wren first, so the tabs must reorder them.
WREN = Kid("200101", "Wren", "WMS", "ALVA-WREN-2718", "fern-lantern-31")  # a demo school: records
BEN = Kid("200102", "Ben", "NHS", "ALVA-BEN-3141", "pebble-harbor-77")  # not a demo school: none


@dataclass(frozen=True)
class RunningPortal:
    url: str
    client: PortalClient
    database: Path


@pytest.fixture(scope="module")
def alvarez_kids(district: District) -> tuple[Kid, Kid]:
    env = provider_env(district.database_url, district.keys_dir, issuer="http://127.0.0.1")

    for kid in (WREN, BEN):
        create_student(
            env,
            kid.sis_id,
            kid.first_name,
            "Alvarez",
            school=kid.school,
            access_id=kid.access_id,
            access_password=kid.access_password,
        )
    return WREN, BEN


@pytest.fixture(scope="module")
def running_portal(
    district: District, provider: Provider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPortal]:
    """The portal under gunicorn with two workers, registered for its real port."""
    port = free_port()
    client = register_portal(district, f"http://127.0.0.1:{port}")
    folder = tmp_path_factory.mktemp("portal")
    database = folder / "portal.db"
    env = portal_env(provider.url, client, f"sqlite:///{database}")
    handle = launch_portal(env, port, folder / "gunicorn-portal.log", workers=2)
    try:
        wait_until_ready([handle])
        yield RunningPortal(handle.url, client, database)
    finally:
        handle.wait_stopped(handle.terminate())


def backend_of(district: District) -> str:
    return urlsplit(district.database_url).scheme.split("+")[0]


def fill_kid(page: Page, row: int, kid: Kid) -> None:
    page.fill(f"#students-{row}-name", kid.first_name)
    page.fill(f"#students-{row}-access_id", kid.access_id)
    page.fill(f"#students-{row}-access_password", kid.access_password)
    page.select_option(f"#students-{row}-relationship", "Father")


def sign_in_at_provider(page: Page, provider: Provider, username: str) -> None:
    page.wait_for_url(f"{provider.url}/signin?request=*")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")


def test_parent_signs_in_through_the_portal_finds_sorted_tabs_and_signs_out_everywhere(
    chromium: Browser,
    provider: Provider,
    district: District,
    running_portal: RunningPortal,
    alvarez_kids: tuple[Kid, Kid],
) -> None:
    portal = running_portal.url
    username = f"sam-{secrets.token_hex(3)}"
    backend = backend_of(district)
    ARTIFACTS.mkdir(exist_ok=True)
    context = chromium.new_context(accept_downloads=True)
    try:
        page = context.new_page()
        page.goto(f"{portal}/")
        assert page.locator("#sign-in").inner_text() == "Sign In"
        page.screenshot(path=str(ARTIFACTS / f"portal-signin-{backend}.png"), full_page=True)

        page.click("#sign-in")
        page.wait_for_url(f"{provider.url}/signin?request=*")
        page.click("text=Create Account")
        page.fill("#first_name", "Sam")
        page.fill("#last_name", "Alvarez")
        page.fill("#email", f"{username}@example.org")
        page.fill("#username", username)
        page.fill("#password", PASSWORD)
        page.fill("#password_confirm", PASSWORD)
        fill_kid(page, 0, WREN)
        fill_kid(page, 1, BEN)
        page.click("button[type=submit]:has-text('Create Account')")
        page.wait_for_url(f"{provider.url}/register/done*")
        page.click("a.button:has-text('Sign In')")
        sign_in_at_provider(page, provider, username)

        page.wait_for_url(f"{portal}/")
        assert page.locator(".welcome").inner_text() == "Welcome, Sam Alvarez"
        assert page.get_attribute(".account-name", "title") == "This is your first sign-in"
        assert page.locator("a.tab").all_inner_texts() == ["Ben", "Wren"]
        # The start page shows the primary student: the first one entered at registration.
        assert page.locator("a.tab[aria-current=page]").inner_text() == "Wren"
        assert page.locator("table.grades tbody tr").count() == len(MIDDLE)
        page.hover(".account-name")
        page.screenshot(path=str(ARTIFACTS / f"portal-start-{backend}.png"), full_page=True)

        page.click("a.tab:has-text('Ben')")
        page.wait_for_url(f"{portal}/students/{BEN.sis_id}")
        assert page.locator("a.tab[aria-current=page]").inner_text() == "Ben"
        assert page.locator(".student-page .unavailable").inner_text() == NOT_AVAILABLE

        page.click("a.tab:has-text('Wren')")
        page.wait_for_url(f"{portal}/students/{WREN.sis_id}")
        assert page.locator("h1.student-name").inner_text() == "Wren Alvarez"
        with page.expect_download() as downloading:
            page.click("text=Download grades and attendance (XML)")
        download = downloading.value
        assert download.suggested_filename == f"student-{WREN.sis_id}-grades-attendance.xml"
        exported = ET.parse(download.path()).getroot()  # noqa: S314 (the portal's own output)
        assert exported.get("id") == WREN.sis_id
        assert [c.get("name") for c in exported.findall("grades/course")] == list(MIDDLE)

        page.click("text=Printer-friendly view")
        page.wait_for_url(f"{portal}/students/{WREN.sis_id}/print")
        assert page.locator("#print").is_visible() and page.locator(".tabs").count() == 0
        page.go_back()

        page.click("button:has-text('Sign Out')")
        page.wait_for_url(f"{portal}/?state=*")
        assert page.locator("[role=status]").inner_text() == "You have signed out."
        assert page.locator("#sign-in").is_visible()
        # Signed out at the provider too: its own page asks for a sign-in again.
        page.goto(f"{provider.url}/account")
        assert urlsplit(page.url).path == "/signin"

        # Signing in again: the name's tooltip now tells the previous sign-in.
        page.goto(f"{portal}/")
        page.click("#sign-in")
        sign_in_at_provider(page, provider, username)
        page.wait_for_url(f"{portal}/")
        previous = page.get_attribute(".account-name", "title") or ""
        # With the device the provider read from this browser's user agent (headless Chromium).
        assert previous.startswith("Previous sign-in: ") and previous.endswith(" UTC from Chrome (Linux)"), (
            previous
        )
    finally:
        context.close()


# --- back-channel logout, over HTTP -----------------------------------------------------------
def portal_sign_in(
    browser: requests.Session, provider: Provider, portal: RunningPortal, district: District
) -> str:
    """Sign in through the portal as a browser would, hop by hop; return the start page's HTML."""
    start = browser.get(f"{portal.url}/login", allow_redirects=False, timeout=HTTP_TIMEOUT)
    assert start.status_code == 302, describe(start)
    request_id = start_authorization(browser, start.headers["Location"])
    path = sign_in(
        browser,
        page_url=provider.url,
        post_url=provider.url,
        request_id=request_id,
        username=district.username,
        password=district.password,
    )
    callback = continue_authorization(browser, provider.url, path, f"{portal.url}/callback")
    arrived = browser.get(callback, allow_redirects=False, timeout=HTTP_TIMEOUT)
    assert arrived.status_code == 302 and arrived.headers["Location"] == "/", describe(arrived)
    home = browser.get(f"{portal.url}/", allow_redirects=False, timeout=HTTP_TIMEOUT)
    assert home.status_code == 200, describe(home)
    return home.text


def signed_in_at_portal(browser: requests.Session, portal: RunningPortal) -> bool:
    page = browser.get(f"{portal.url}/", allow_redirects=False, timeout=HTTP_TIMEOUT)
    return page.status_code == 200 and welcomes_dana(page.text)


def welcomes_dana(html: str) -> bool:
    return "Welcome, Dana Rivera" in re.sub(r"<[^>]+>", "", html)


def portal_rows(portal: RunningPortal) -> int:
    with sqlite3.connect(portal.database) as db:
        (count,) = db.execute("SELECT count(*) FROM portal_session WHERE account_sub IS NOT NULL").fetchone()
    return int(count)


def signed_in_subs(portal: RunningPortal) -> list[str]:
    with sqlite3.connect(portal.database) as db:
        rows = db.execute("SELECT account_sub FROM portal_session WHERE account_sub IS NOT NULL").fetchall()
    return [sub for (sub,) in rows]


def sub_of(browser: requests.Session, portal: RunningPortal) -> str:
    """Whom the portal's row for this browser's session cookie names (other tests leave rows)."""
    id_hash = hashlib.sha256(browser.cookies["rp_session"].encode()).hexdigest()
    with sqlite3.connect(portal.database) as db:
        (sub,) = db.execute("SELECT account_sub FROM portal_session WHERE id_hash = ?", (id_hash,)).fetchone()
    return str(sub)


def test_signing_out_at_the_provider_ends_that_portal_session_through_the_back_channel(
    provider: Provider, district: District, running_portal: RunningPortal
) -> None:
    with requests.Session() as first, requests.Session() as second:
        assert welcomes_dana(portal_sign_in(first, provider, running_portal, district))
        portal_sign_in(second, provider, running_portal, district)
        before = portal_rows(running_portal)

        # The user signs out on the provider's own page (it asks first), not through the portal.
        asked = first.get(f"{provider.url}/logout", timeout=HTTP_TIMEOUT)
        assert asked.status_code == 200 and "Sign Out" in asked.text, describe(asked)
        done = first.post(
            f"{provider.url}/logout", data={"csrf_token": csrf_token(asked.text)}, timeout=HTTP_TIMEOUT
        )
        assert done.status_code == 200, describe(done)

        # The provider delivered the logout token before answering: that session is gone in
        # every portal worker (it was a row), and the other browser's session is untouched.
        assert not signed_in_at_portal(first, running_portal)
        assert signed_in_at_portal(second, running_portal)
        assert portal_rows(running_portal) == before - 1


def test_a_logout_token_delivered_again_does_not_end_a_later_session(
    provider: Provider, district: District, running_portal: RunningPortal
) -> None:
    """A captured logout token, posted after Dana signs in again, is refused (its jti is known)."""
    with requests.Session() as before, requests.Session() as after:
        portal_sign_in(before, provider, running_portal, district)
        now = int(time.time())
        claims = {
            "iss": provider.url,
            "aud": running_portal.client.client_id,
            "iat": now,
            "exp": now + 120,
            "jti": secrets.token_hex(8),
            "sub": sub_of(before, running_portal),
            "events": {BACKCHANNEL_EVENT: {}},
        }
        # Signed with the provider's own key, from its key set: a token it could have sent.
        token = KeyRing(district.keys_dir, clock=SystemClock()).sign(claims, typ="logout+jwt")

        def deliver() -> requests.Response:
            url = f"{running_portal.url}/backchannel-logout"
            return requests.post(url, data={"logout_token": token}, timeout=HTTP_TIMEOUT)

        first = deliver()
        assert first.status_code == 200, describe(first)
        assert not signed_in_at_portal(before, running_portal)

        portal_sign_in(after, provider, running_portal, district)
        again = deliver()
        assert again.status_code == 400 and again.json()["error"] == "invalid_request", describe(again)
        assert "received before" in again.json()["error_description"]
        assert signed_in_at_portal(after, running_portal)


def test_a_forged_logout_token_ends_nothing(
    provider: Provider, district: District, running_portal: RunningPortal
) -> None:
    with requests.Session() as browser:
        portal_sign_in(browser, provider, running_portal, district)
        jwks = fetch_json(browser, f"{provider.url}/jwks.json")
        kid = next(k["kid"] for k in jwks["keys"] if k["kty"] == "RSA")
        impostor = RSAKey.generate_key(2048, parameters={"kid": kid}, private=True)
        claims = {
            "iss": provider.url,
            "aud": running_portal.client.client_id,
            "iat": int(time.time()),
            "jti": secrets.token_hex(8),
            "sub": signed_in_subs(running_portal)[0],  # whom it would sign out if it were believed
            "events": {BACKCHANNEL_EVENT: {}},
        }
        forged = jwt.encode({"alg": "RS256", "kid": kid, "typ": "logout+jwt"}, claims, impostor)
        for token in (forged, "not-a-token"):
            answer = requests.post(
                f"{running_portal.url}/backchannel-logout", data={"logout_token": token}, timeout=HTTP_TIMEOUT
            )
            assert answer.status_code == 400 and answer.json()["error"] == "invalid_request", describe(answer)
            assert answer.headers["Cache-Control"] == "no-store"
        assert signed_in_at_portal(browser, running_portal)


# --- joined up, and on a phone ----------------------------------------------------------------
def page_width(page: Page) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))


def test_on_a_phone_the_portal_and_account_preferences_fit_and_lead_to_each_other(
    chromium: Browser, provider: Provider, district: District, running_portal: RunningPortal
) -> None:
    portal = running_portal.url
    context = chromium.new_context(viewport={"width": 360, "height": 740})
    try:
        page = context.new_page()
        page.goto(f"{portal}/")
        page.click("#sign-in")
        page.wait_for_url(f"{provider.url}/signin?request=*")
        page.fill("#username", district.username)
        page.fill("#password", district.password)
        page.click("main button[type=submit]")
        page.wait_for_load_state()
        import sys

        print("DEBUG", page.url, page.inner_text("body")[:500], file=sys.stderr)
        page.wait_for_url(f"{portal}/")
        assert page.locator("table.grades").count() == 1
        assert page_width(page) <= 360, "the portal's start page scrolls sideways"

        page.click("#account-preferences")
        page.wait_for_url(f"{provider.url}/account*")
        assert page_width(page) <= 360, "Account Preferences scrolls sideways"
        page.click("text=Students")
        page.wait_for_url(f"{provider.url}/account/students")
        assert page_width(page) <= 360, "the Students tab scrolls sideways"

        back = page.locator("#back-to-portal")
        assert back.inner_text() == "Back to Demo School Portal"
        back.click()
        page.wait_for_url(f"{portal}/")
        assert page.locator(".welcome").is_visible()
    finally:
        context.close()
