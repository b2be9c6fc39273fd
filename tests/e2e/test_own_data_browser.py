"""Account Preferences' signed-in devices in real Chromium: a parent signed in at the portal on two
devices signs the other one out from "Devices and data", and that device is signed out at its
portal (back-channel logout), while this one stays."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import Browser

from tests.e2e.conftest import (
    HTTP_TIMEOUT,
    District,
    Provider,
    free_port,
    provider_env,
    run_idp,
    wait_until_ready,
)
from tests.e2e.flows import continue_authorization, describe, sign_in, start_authorization
from tests.e2e.portal import launch_portal, portal_env, register_portal
from tests.e2e.test_portal_browser import PASSWORD, RunningPortal

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_backends("postgresql")]

FIREFOX_ON_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


@pytest.fixture(scope="module")
def running_portal(
    district: District, provider: Provider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPortal]:
    """The portal under gunicorn, with one worker, registered for its real port."""
    port = free_port()
    client = register_portal(district, f"http://127.0.0.1:{port}")
    folder = tmp_path_factory.mktemp("portal")
    database = folder / "portal.db"
    handle = launch_portal(
        portal_env(provider.url, client, f"sqlite:///{database}"), port, folder / "gunicorn.log", workers=1
    )
    try:
        wait_until_ready([handle])
        yield RunningPortal(handle.url, client, database)
    finally:
        handle.wait_stopped(handle.terminate())


def welcomed(html: str, name: str) -> bool:
    return f"Welcome, {name}" in re.sub(r"<[^>]+>", "", html)


def portal_sign_in(
    browser: requests.Session, provider: Provider, portal: RunningPortal, username: str
) -> str:
    """Sign in through the portal hop by hop, as a second device would; return the start page."""
    start = browser.get(f"{portal.url}/login", allow_redirects=False, timeout=HTTP_TIMEOUT)
    assert start.status_code == 302, describe(start)
    request_id = start_authorization(browser, start.headers["Location"])
    path = sign_in(
        browser,
        page_url=provider.url,
        post_url=provider.url,
        request_id=request_id,
        username=username,
        password=PASSWORD,
    )
    callback = continue_authorization(browser, provider.url, path, f"{portal.url}/callback")
    arrived = browser.get(callback, allow_redirects=False, timeout=HTTP_TIMEOUT)
    assert arrived.status_code == 302, describe(arrived)
    return browser.get(f"{portal.url}/", allow_redirects=False, timeout=HTTP_TIMEOUT).text


def test_signing_out_another_device_signs_it_out_at_its_portal(
    chromium: Browser, provider: Provider, district: District, running_portal: RunningPortal
) -> None:
    username = f"ivy-{secrets.token_hex(3)}"
    env = provider_env(district.database_url, district.keys_dir, issuer="http://127.0.0.1")
    run_idp(
        env,
        *("accounts", "create", "--username", username, "--email", f"{username}@example.org"),
        *("--password", PASSWORD, "--first-name", "Ivy", "--last-name", "Okafor"),
    )
    portal = running_portal.url
    with requests.Session() as phone:
        phone.headers["User-Agent"] = FIREFOX_ON_LINUX
        assert welcomed(portal_sign_in(phone, provider, running_portal, username), "Ivy Okafor")

        context = chromium.new_context()
        try:
            page = context.new_page()
            page.goto(f"{portal}/")
            page.click("#sign-in")
            page.wait_for_url(f"{provider.url}/signin?request=*")
            page.fill("#username", username)
            page.fill("#password", PASSWORD)
            page.press("#password", "Enter")  # the form's own submit, whatever else the page offers
            page.wait_for_url(f"{portal}/")

            page.goto(f"{provider.url}/account/devices")
            rows = page.locator("#devices tr", has_text="Firefox on Linux")
            assert rows.count() == 1
            assert page.locator("#devices tr", has_text="this device").count() == 1
            rows.locator("button:has-text('Sign Out')").click()
            page.wait_for_url(f"{provider.url}/account/devices")
            assert page.locator("[role=status]").inner_text() == "The device was signed out."
            assert page.locator("#devices tr", has_text="Firefox on Linux").count() == 0

            # The other device was told through the back channel: the portal no longer knows it.
            after = phone.get(f"{portal}/", allow_redirects=False, timeout=HTTP_TIMEOUT)
            assert not welcomed(after.text, "Ivy Okafor"), describe(after)
            # This one stays signed in, at the portal and at the provider.
            page.goto(f"{portal}/")
            assert welcomed(page.content(), "Ivy Okafor")
            page.goto(f"{provider.url}/account/devices")
            assert urlsplit(page.url).path == "/account/devices"
        finally:
            context.close()
