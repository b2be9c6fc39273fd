"""A parent creates an account with two students in real headless Chromium, then signs in through a portal.

The provider is real gunicorn (tests/e2e/conftest.py); the browser is Debian's Chromium driven by
Playwright (never a downloaded browser build); the portal's side (token redemption, ID-token
verification) is ``requests`` and joserfc, as in the other end-to-end tests.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import Browser, Page, Route

from tests.conftest import AuthRequest, redirect_params
from tests.e2e.conftest import (
    ARTIFACTS,
    HTTP_TIMEOUT,
    District,
    Provider,
    create_student,
    provider_env,
)
from tests.e2e.flows import describe, fetch_json, redeem, verify_id_token

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_backends("postgresql")]

# The district fixture's student, and one more made here with the CLI.
ZOE = ("ZR-4821", "tiger-lily-42", "100234")
MAYA = ("MC-5502", "harbor-88", "100310")
NEW_PASSWORD = "lantern-orchard-velvet-93"


@pytest.fixture(scope="module")
def second_student(district: District) -> str:
    env = provider_env(district.database_url, district.keys_dir, issuer="http://127.0.0.1")
    access_id, access_password, sis_id = MAYA
    return create_student(
        env, sis_id, "Maya", "Chen", school="WMS", access_id=access_id, access_password=access_password
    )


def fill_student(
    page: Page, row: int, name: str, access_id: str, access_password: str, relationship: str
) -> None:
    page.fill(f"#students-{row}-name", name)
    page.fill(f"#students-{row}-access_id", access_id)
    page.fill(f"#students-{row}-access_password", access_password)
    page.select_option(f"#students-{row}-relationship", relationship)


def test_parent_registers_two_students_and_finds_both_in_the_id_token(
    chromium: Browser, provider: Provider, district: District, second_student: str
) -> None:
    auth = AuthRequest(district.client_id, redirect_uri=district.redirect_uri)
    username = f"parent-{secrets.token_hex(3)}"
    callbacks: list[str] = []

    def portal_callback(route: Route) -> None:
        # The portal is not running: the browser's arrival at its redirect URI is the result.
        callbacks.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<p>portal</p>")

    context = chromium.new_context()
    try:
        page = context.new_page()
        page.route(f"{district.redirect_uri}*", portal_callback)
        page.goto(auth.url(provider.url))
        assert urlsplit(page.url).path == "/signin"

        page.click("text=Create Account")
        # The click returns once the navigation starts: count the rows of the loaded page.
        page.wait_for_url(f"{provider.url}/register*")
        page.wait_for_load_state()
        assert urlsplit(page.url).path == "/register"
        # Two student rows without any script, and the rules before anything is typed.
        assert page.locator(".student-row").count() == 2
        assert page.locator("#password-requirements").is_visible()
        # The script adds a row; an empty row is ignored.
        page.click("#add-student")
        assert page.locator(".student-row").count() == 3
        assert page.locator("#students-2-access_id").count() == 1
        page.fill("#first_name", "Dana")
        page.fill("#last_name", "Okafor")
        page.fill("#email", f"{username}@example.org")
        page.fill("#username", username)
        page.fill("#password", NEW_PASSWORD)
        page.fill("#password_confirm", NEW_PASSWORD)
        fill_student(page, 0, "Zoe", ZOE[0], ZOE[1], "Guardian")
        fill_student(page, 1, "Maya", MAYA[0], MAYA[1], "Guardian")
        ARTIFACTS.mkdir(exist_ok=True)
        backend = urlsplit(district.database_url).scheme.split("+")[0]
        page.screenshot(path=str(ARTIFACTS / f"register-{backend}.png"), full_page=True)
        page.click("button[type=submit]:has-text('Create Account')")

        page.wait_for_url(f"{provider.url}/register/done*")
        page.click("a.button:has-text('Sign In')")
        page.wait_for_url(f"{provider.url}/signin?request=*")
        page.fill("#username", username)
        page.fill("#password", NEW_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{district.redirect_uri}*")
    finally:
        context.close()

    (callback,) = callbacks
    params = redirect_params(callback)
    assert params["state"] == auth.state
    with requests.Session() as portal:
        response = redeem(portal, provider.url, auth, params["code"], district)
        with response:
            assert response.status_code == 200, describe(response)
            tokens = response.json()
        jwks = fetch_json(portal, f"{provider.url}/jwks.json")
        assert requests.get(f"{provider.url}/healthz", timeout=HTTP_TIMEOUT).status_code == 200
    claims = verify_id_token(
        tokens["id_token"], jwks, issuer=provider.url, client_id=district.client_id, nonce=auth.nonce
    ).claims

    assert claims["student_ids"] == [second_student, ZOE[2]]  # Maya, then Zoe: by first name
    assert [(s["given_name"], s["relationship"]) for s in claims["students"]] == [
        ("Maya", "Guardian"),
        ("Zoe", "Guardian"),
    ]
    assert claims["primary_student_id"] == ZOE[2]  # the first one entered
