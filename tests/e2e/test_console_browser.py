"""A district admin works in the console, in real headless Chromium, against real gunicorn.

The staff member comes from ``idp staff create`` (a temporary password printed once), signs in,
changes the password, enrols an authenticator (the code is computed from the key the page shows,
as an app would), finds a parent by a student ID number, emulates the parent (banner, password
change refused), ends it, removes a student (the mail reaches a real SMTP server through
``idp worker --once``), and deletes a test account.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import District, ProviderPool, create_student, provider_env, run_idp
from tests.smtp import Inbox, smtp_server, text_of

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_backends("postgresql")]

NEW_PASSWORD = "quarry-lantern-meadow-tides-41"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, str]]:
    with smtp_server() as (received, port):
        yield received, f"smtp://127.0.0.1:{port}"


def staff_temporary_password(output: str) -> str:
    """The temporary password ``idp staff create`` prints once, on the line that names it."""
    match = re.search(r"[Tt]emporary password[^:]*:\s*(\S+)", output)
    assert match, output
    return match.group(1)


def sign_in_first_time(page: Page, base: str, username: str, temporary: str) -> None:
    page.goto(f"{base}/admin/")
    assert urlsplit(page.url).path == "/admin/signin"
    page.fill("#username", username)
    page.fill("#password", temporary)
    page.click("button[type=submit]")
    # The first sign-in asks for a password of one's own, then an authenticator.
    page.wait_for_url(f"{base}/admin/signin/change-password*")
    page.fill("#current_password", temporary)
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#confirm_password", NEW_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin/enrol*")
    assert page.locator(".qr svg").count() == 1
    key = page.inner_text("#totp-key").strip()
    assert (page.text_content("#totp-uri") or "").strip().startswith("otpauth://totp/")
    page.fill("#code", pyotp.TOTP(key).now())
    page.click("button[type=submit]")
    assert page.locator("#backup-codes li").count() == 10
    page.click("a.button")
    page.wait_for_url(f"{base}/admin/*")


def test_district_admin_emulates_unlinks_and_deletes(
    chromium: Browser, district: District, start_providers: ProviderPool, inbox: tuple[Inbox, str]
) -> None:
    received, smtp_url = inbox
    (provider,) = start_providers.start(
        district.database_url, district.keys_dir, workers=1, threads=4, IDP_SMTP_URL=smtp_url
    )
    base = provider.url
    env = provider_env(district.database_url, district.keys_dir, issuer=base, IDP_SMTP_URL=smtp_url)
    tag = secrets.token_hex(3)
    sis_id, other_sis_id = f"9{tag}1", f"9{tag}2"
    parent_email = f"lee-{tag}@example.org"

    def student(sid: str, first: str) -> str:
        return create_student(
            env, sid, first, f"Marsh{tag}", school="LES", access_id=f"A-{sid}", access_password=f"pw-{sid}-x"
        )

    student(sis_id, "Ruby")
    student(other_sis_id, "Theo")
    run_idp(
        env,
        *("accounts", "create", "--username", f"test.{tag}", "--email", f"test-{tag}@example.org"),
        *("--password", f"test-pass-{tag}-long", "--first-name", "Tess"),
        *("--last-name", f"Probe{tag}"),
    )
    created = run_idp(
        env,
        *("staff", "create", "--username", f"admin.{tag}", "--email", f"admin-{tag}@example.org"),
        *("--first-name", "Ada", "--last-name", "Admin", "--role", "district-admin"),
    )
    run_idp(
        env,
        *("accounts", "create", "--username", f"lee.{tag}", "--email", parent_email),
        *("--password", f"parent-pass-{tag}-long", "--first-name", "Lee", "--last-name", f"Marsh{tag}"),
        *("--link", f"{sis_id}:Mother", "--link", f"{other_sis_id}:Mother"),
    )

    context = chromium.new_context()
    try:
        page = context.new_page()
        sign_in_first_time(page, base, f"admin.{tag}", staff_temporary_password(created))

        # Find the parent by a student ID number.
        page.goto(f"{base}/admin/accounts")
        page.fill("#q", sis_id)
        with page.expect_navigation():
            page.click("button[type=submit]:has-text('Refresh')")
        rows = page.locator("#accounts tbody tr")
        expect(rows).to_have_count(1)
        assert parent_email in rows.first.inner_text()
        rows.first.locator("th a").click()
        account_url = page.url

        # Emulate: the parent's own pages, with the banner, and no credential may change.
        page.fill("#emulate-reason", "Parent on the phone cannot see Ruby")
        page.click("#emulate button[type=submit]")
        page.wait_for_url(f"{base}/account*")
        assert "Lee" in page.inner_text("#emulation-banner")
        change = context.request.post(
            f"{base}/account/password",
            form={
                "csrf_token": page.locator("input[name=csrf_token]").first.get_attribute("value") or "",
                "current_password": "x",
                "new_password": NEW_PASSWORD,
                "confirm_password": NEW_PASSWORD,
            },
        )
        assert change.status == 403
        page.click("#emulation-end")
        page.wait_for_url(account_url)
        page.goto(f"{base}/account")
        assert urlsplit(page.url).path != "/account"  # the emulated session is gone

        # Remove Theo from the account; the parent is told by mail.
        page.goto(account_url)
        page.click("button[aria-label^='Remove Theo']")
        page.wait_for_url(account_url)
        assert "Theo" not in page.inner_text("#linked-students")
        run_idp(env, "worker", "--once")
        # Two notices: the emulation's, then the removal's.
        emulated, removed = received.to(parent_email)
        assert "Parent on the phone cannot see Ruby" in text_of(emulated)
        assert "Theo" in text_of(removed)

        # Mark the other account as a test account, then delete it.
        page.goto(f"{base}/admin/accounts?q=test.{tag}")
        page.locator("#accounts tbody tr th a").first.click()
        test_account_url = page.url
        page.click("#test-mark button")
        page.wait_for_url(test_account_url)
        page.click("#delete")
        page.fill("#reason", "A test account that is no longer needed")
        page.click("button[type=submit]:has-text('Delete the account')")
        page.wait_for_url(f"{base}/admin/accounts*")
        response = page.goto(test_account_url)
        assert response is not None and response.status == 404
    finally:
        context.close()
