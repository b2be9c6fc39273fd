"""Every page of the provider, the console and the demo portal under axe-core, in real Chromium.

axe-core is the npm package (``tests/e2e/axe``, installed by ``scripts/test.sh`` with ``npm ci``),
injected into Debian's Chromium through Playwright. Each page is checked at 1280 px and at 360 px
against the WCAG 2.0 and 2.1 A and AA rules, with no sideways scrolling at 360 px. A walk of one
browser context visits many pages, so the module starts one portal and reuses the shared provider.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize

from tests.conftest import REDIRECT_URI, AuthRequest
from tests.e2e.conftest import (
    District,
    Provider,
    create_student,
    free_port,
    provider_env,
    run_idp,
    wait_until_ready,
)
from tests.e2e.portal import launch_portal, portal_env, register_portal

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_backends("postgresql")]

AXE = Path(__file__).with_name("axe") / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
WIDE: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 360, "height": 740}
PASSWORD = "meadow-lantern-quartz-61"
STAFF_PASSWORD = "quarry-lantern-meadow-tides-41"
# A student at a demo school (the portal shows records) and one at a school it knows nothing of.
RECORDED = ("300101", "Iris", "WMS", "AX-IRIS-1001", "cobalt-river-17")
UNRECORDED = ("300102", "Omar", "NHS", "AX-OMAR-1002", "amber-field-29")


def axe_available() -> None:
    """Fail (or skip without node) when axe-core is not installed: the tests need it."""
    if AXE.is_file():
        return
    if shutil.which("npm") is None:
        pytest.skip("node/npm are not installed: axe-core (tests/e2e/axe) cannot be installed")
    pytest.fail("axe-core is not installed: run `npm ci --prefix tests/e2e/axe` (scripts/test.sh does)")


@dataclass
class Audit:
    """Runs axe and the sideways-scroll check on pages, and keeps every problem for one report."""

    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def check(self, page: Page, name: str) -> None:
        """Check the page as it is now at 1280 px, then at 360 px (and leave it at 1280 px)."""
        page.wait_for_load_state()
        self.checked.append(name)
        try:
            page.set_viewport_size(WIDE)
            self._axe(page, name, WIDE["width"])
            page.set_viewport_size(PHONE)
            scroll_width, inner_width = page.evaluate(
                "[document.documentElement.scrollWidth, window.innerWidth]"
            )
            if scroll_width > inner_width:
                self.problems.append(
                    f"{name} ({page.url}) at 360 px scrolls sideways: {scroll_width} px wide"
                )
            self._axe(page, name, PHONE["width"])
        finally:
            page.set_viewport_size(WIDE)

    def _axe(self, page: Page, name: str, width: int) -> None:
        if not page.evaluate("typeof window.axe !== 'undefined'"):
            page.add_script_tag(path=str(AXE))
        result: dict[str, Any] = page.evaluate(
            "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
            AXE_TAGS,
        )
        for violation in result["violations"]:
            targets = "; ".join(" ".join(node["target"]) for node in violation["nodes"][:6])
            self.problems.append(
                f"{name} ({page.url}) at {width} px: {violation['id']} [{violation['impact']}] "
                f"{violation['help']} — {targets}"
            )

    def assert_clean(self) -> None:
        assert self.checked, "no page was checked"
        assert not self.problems, f"{len(self.problems)} accessibility problem(s):\n" + "\n".join(
            self.problems
        )


@dataclass(frozen=True)
class Portal:
    url: str


@pytest.fixture(scope="module")
def env(district: District) -> dict[str, str]:
    return provider_env(district.database_url, district.keys_dir, issuer="http://127.0.0.1")


@pytest.fixture(scope="module")
def tag() -> str:
    return secrets.token_hex(3)


@dataclass(frozen=True)
class Cast:
    """The people and clients the walk needs, all made with the ``idp`` CLI (names made unique)."""

    students: list[str]  # a student the portal has records of, then one it has none of
    parent: str  # a parent of both, with a password of their own
    recovering: str  # a parent who forgets the password (``<username>@example.org``)
    temporary: str  # a parent with a temporary password
    staff: str  # a district admin, and the temporary password ``idp staff create`` printed
    staff_password: str
    third_party: str  # a client that is not first-party: it asks for consent
    invited: str  # the address a roster invitation was queued for (``idp worker`` sends it)


@pytest.fixture(scope="module")
def cast(env: dict[str, str], tag: str, tmp_path_factory: pytest.TempPathFactory) -> Cast:
    def student(row: tuple[str, str, str, str, str]) -> str:
        sis_id, first, school, access_id, access_password = row
        return create_student(
            env,
            f"{sis_id}{tag}",
            first,
            f"Axe{tag}",
            school=school,
            access_id=f"{access_id}-{tag}",
            access_password=access_password,
        )

    def parent(username: str, *extra: str) -> str:
        run_idp(
            env,
            *("accounts", "create", "--username", username, "--email", f"{username}@example.org"),
            *("--password", PASSWORD, "--first-name", username.split(".")[0].title()),
            *("--last-name", f"Axe{tag}", *extra),
        )
        return username

    def roster() -> str:
        folder = tmp_path_factory.mktemp("axe-roster")
        write_roster(folder, tag)
        run_idp(env, "roster", "import", str(folder))
        run_idp(env, "roster", "invite", "--school", f"AX{tag}")
        return f"ines-{tag}@example.org"

    staff_args = (
        *("staff", "create", "--username", f"ada.{tag}", "--email", f"ada-{tag}@example.org"),
        *("--first-name", "Ada", "--last-name", "Admin", "--role", "district-admin"),
    )
    client_args = (
        *("clients", "create", "--name", f"Homework Helper {tag}", "--redirect-uri", REDIRECT_URI),
        "--json",
    )
    ids = [student(row) for row in (RECORDED, UNRECORDED)]
    staff = run_idp(env, *staff_args)
    staff_password = re.search(r"[Tt]emporary password[^:]*:\s*(\S+)", staff)
    assert staff_password, staff
    return Cast(
        students=ids,
        parent=parent(f"kai.{tag}", "--link", f"{ids[0]}:Father", "--link", f"{ids[1]}:Father"),
        recovering=parent(f"rae.{tag}"),
        temporary=parent(f"lou.{tag}", "--temporary"),
        staff=f"ada.{tag}",
        staff_password=staff_password.group(1),
        third_party=json.loads(run_idp(env, *client_args))["client_id"],
        invited=roster(),
    )


@pytest.fixture(scope="module")
def portal(
    district: District, provider: Provider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Portal]:
    """The demo portal under gunicorn with one worker, registered for its real port."""
    port = free_port()
    client = register_portal(district, f"http://127.0.0.1:{port}")
    folder = tmp_path_factory.mktemp("axe-portal")
    handle = launch_portal(
        portal_env(provider.url, client, f"sqlite:///{folder / 'portal.db'}"),
        port,
        folder / "gunicorn.log",
        workers=1,
    )
    try:
        wait_until_ready([handle])
        yield Portal(handle.url)
    finally:
        handle.wait_stopped(handle.terminate())


@pytest.fixture
def context(chromium: Browser) -> Iterator[BrowserContext]:
    axe_available()
    # The pages' Content-Security-Policy allows no inline script: axe is injected as one.
    made = chromium.new_context(viewport=WIDE, bypass_csp=True)
    try:
        yield made
    finally:
        made.close()


def write_roster(folder: Path, tag: str) -> None:
    """Write a OneRoster set of one school of its own, one student and one guardian with an address."""
    files = {
        "manifest.csv": "propertyName,value\nmanifest.version,1.0\noneroster.version,1.2\n"
        + "".join(
            f"file.{name},{'bulk' if name in ('orgs', 'users', 'roles') else 'absent'}\n"
            for name in [
                "academicSessions",
                "categories",
                "classes",
                "classResources",
                "courses",
                "courseResources",
                "demographics",
                "enrollments",
                "lineItems",
                "orgs",
                "resources",
                "results",
                "roles",
                "userProfiles",
                "users",
            ]
        ),
        "orgs.csv": "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n"
        f"org-{tag},,,Axe School {tag},school,AX{tag},\n",
        "users.csv": "sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,"
        "middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,userMasterIdentifier,"
        "resourceSourcedIds,preferredGivenName,preferredMiddleName,preferredFamilyName,primaryOrgSourcedId,"
        "pronouns,metadata.language\n"
        f"stu-{tag},,,true,,,Noor,Axe{tag},,4{tag},,,,par-{tag},03,,,,,,,org-{tag},,\n"
        f"par-{tag},,,true,,,Ines,Axe{tag},,,ines-{tag}@example.org,,,stu-{tag},,,,,,,,org-{tag},,\n",
        "roles.csv": "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,"
        "orgSourcedId,userProfileSourcedId\n"
        f"role-s-{tag},,,stu-{tag},primary,student,,,org-{tag},\n"
        f"role-p-{tag},,,par-{tag},primary,parent,,,org-{tag},\n",
    }
    for name, text in files.items():
        (folder / name).write_text(text)


def sign_in(page: Page, username: str, password: str) -> None:
    page.fill("#username", username)
    page.fill("#password", password)
    page.press("#password", "Enter")
    page.wait_for_load_state()


def focus_lands_on(page: Page, element_id: str) -> None:
    """Fail unless focus reaches ``element_id`` once the page has loaded (``autofocus`` acts then)."""
    page.wait_for_load_state("load")
    page.wait_for_function(
        "id => document.activeElement !== null && document.activeElement.id === id",
        arg=element_id,
        timeout=10_000,
    )


def mail_to(outbox: Path, address: str) -> list[EmailMessage]:
    messages = []
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if message["To"] == address:
            messages.append(message)
    return messages


def link_in(message: EmailMessage, pattern: str) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    match = re.search(pattern, str(part.get_content()))
    assert match, part.get_content()
    return match.group(0)


# --- the provider, signed out ------------------------------------------------------------------
def test_signed_out_pages_pass_axe_at_both_widths(
    context: BrowserContext,
    provider: Provider,
    district: District,
    env: dict[str, str],
    cast: Cast,
    tag: str,
) -> None:
    base = provider.url
    audit = Audit()
    page = context.new_page()
    visits: list[tuple[str, Callable[[], Any]]] = [
        ("home", lambda: page.goto(f"{base}/")),
        ("sign-in", lambda: page.goto(f"{base}/signin")),
        ("sign-in, wrong password", lambda: sign_in(page, district.username, "not-the-password")),
        ("trouble: forgot password", lambda: page.goto(f"{base}/signin/trouble")),
        ("trouble: forgot username", lambda: page.goto(f"{base}/signin/trouble?tab=username")),
        ("register", lambda: page.goto(f"{base}/register")),
        ("verify, unknown link", lambda: page.goto(f"{base}/verify/not-a-token")),
        ("verify, send again", lambda: page.goto(f"{base}/verify/resend")),
        ("invitation, unknown link", lambda: page.goto(f"{base}/invitations/gi_not-a-token")),
        ("not found", lambda: page.goto(f"{base}/no-such-page")),
        ("bad authorization request", lambda: page.goto(f"{base}/authorize?client_id=nobody")),
        ("reset, unknown link", lambda: page.goto(f"{base}/reset/not-a-token")),
    ]
    for name, visit in visits:
        visit()
        audit.check(page, name)

    # The answers after each recovery form.
    page.goto(f"{base}/signin/trouble?tab=username")
    page.fill("#fu-email", f"nobody-{tag}@example.org")
    page.press("#fu-email", "Enter")
    audit.check(page, "forgot username: sent")

    username, address = cast.recovering, f"{cast.recovering}@example.org"
    page.goto(f"{base}/signin/trouble")
    page.fill("#fp-username", username)
    page.fill("#fp-email", address)
    page.press("#fp-email", "Enter")
    audit.check(page, "forgot password: sent")

    # The mailed link leads to Recover Password; a mismatch shows the errors. The worker sends
    # the roster's invitation too; it runs with the CLI's issuer, so only the links' paths count.
    run_idp(env, "worker", "--once")
    outbox = district.keys_dir.parent / "outbox"
    (mail,) = mail_to(outbox, address)
    (invitation_mail,) = mail_to(outbox, cast.invited)
    page.goto(base + urlsplit(link_in(mail, r"https?://\S+/reset/\S+")).path)
    audit.check(page, "recover password")
    page.fill("#username", username)
    page.fill("#new_password", "short")
    page.fill("#confirm_password", "different")
    with page.expect_navigation():
        page.click("main button[type=submit]")
    audit.check(page, "recover password, with errors")

    # A locked username: the threshold's worth of failures (10), then the message.
    locked = f"nobody-{tag}"
    page.goto(f"{base}/signin")
    for _ in range(11):
        sign_in(page, locked, "wrong-password")
    assert "locked" in page.inner_text("main"), page.inner_text("main")
    audit.check(page, "sign-in, locked")

    # A guardian's invitation from a roster, and the page to create an account from it.
    invitation = urlsplit(link_in(invitation_mail, r"https?://\S+/invitations/\S+")).path
    page.goto(base + invitation)
    audit.check(page, "invitation")
    page.goto(f"{base}{invitation}/account")
    audit.check(page, "invitation: create account")

    # Registration after a failed submit: the error summary.
    page.goto(f"{base}/register")
    with page.expect_navigation():
        page.click("button[type=submit]:has-text('Create Account')")
    audit.check(page, "register, with errors")
    audit.assert_clean()


# --- a parent, signed in ------------------------------------------------------------------------
def test_parent_pages_pass_axe_at_both_widths(
    context: BrowserContext,
    provider: Provider,
    district: District,
    cast: Cast,
) -> None:
    base = provider.url
    audit = Audit()
    page = context.new_page()
    page.goto(f"{base}/signin")
    sign_in(page, cast.parent, PASSWORD)
    assert urlsplit(page.url).path == "/account", page.url
    visits: list[tuple[str, str]] = [
        ("account: profile", "/account"),
        ("account: edit name", "/account?edit=name"),
        ("account: edit email", "/account?edit=email"),
        ("account: edit username", "/account?edit=username"),
        ("account: edit password", "/account?edit=password"),
        ("account: students", "/account/students"),
        ("account: devices and data", "/account/devices"),
        ("account: delete", "/account/delete"),
        ("sign out: asks first", "/logout"),
        ("home, signed in", "/"),
        ("invitation, unknown link, signed in", "/invitations/gi_not-a-token"),
    ]
    for name, path in visits:
        page.goto(base + path)
        audit.check(page, name)

    for name, link in (
        ("account: relationship", "#relationship-1"),
        ("account: remove a student", "#remove-1"),
    ):
        page.goto(f"{base}/account/students")
        with page.expect_navigation():
            page.click(link)
        audit.check(page, name)

    # Failed submits show their errors.
    page.goto(f"{base}/account?edit=password")
    page.fill("#current_password", "not-the-password")
    page.fill("#new_password", "short")
    page.fill("#confirm_password", "different")
    with page.expect_navigation():
        page.click("#profile-password button[type=submit]")
    audit.check(page, "account: password, with errors")
    focus_lands_on(page, "error-summary")
    page.goto(f"{base}/account?edit=name")
    page.fill("#first_name", "")
    # The browser's own check of the required field answers here: no request is sent.
    page.click("#profile-name button[type=submit]")
    audit.check(page, "account: name, with errors")
    page.goto(f"{base}/account/students")
    with page.expect_navigation():
        page.click("form[action$='/account/students'] button[type=submit]")
    audit.check(page, "account: add a student, with errors")

    # Consent for a third-party portal.
    page.goto(AuthRequest(cast.third_party, redirect_uri=REDIRECT_URI).url(base))
    assert page.locator("button:has-text('Allow')").count() == 1, page.url
    audit.check(page, "consent")

    # A temporary password: the forced change, plain and with errors.
    assert context.browser is not None
    fresh = context.browser.new_context(viewport=WIDE, bypass_csp=True)
    try:
        forced = fresh.new_page()
        forced.goto(f"{base}/signin")
        sign_in(forced, cast.temporary, PASSWORD)
        assert urlsplit(forced.url).path == "/signin/change-password", forced.url
        audit.check(forced, "change password (temporary)")
        forced.fill("#current_password", PASSWORD)
        forced.fill("#new_password", "short")
        forced.fill("#confirm_password", "different")
        with forced.expect_navigation():
            forced.click("main button[type=submit]")
        focus_lands_on(forced, "error-summary")
        audit.check(forced, "change password, with errors")
    finally:
        fresh.close()
    audit.assert_clean()


# --- keyboard alone -------------------------------------------------------------------------------
def test_a_parent_signs_in_with_the_keyboard_alone_and_the_error_summary_takes_focus(
    context: BrowserContext, provider: Provider, cast: Cast
) -> None:
    page = context.new_page()
    page.goto(f"{provider.url}/signin")
    # Tab from the top of the page until the username field has focus, then type and Enter.
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "username":
            break
    assert page.evaluate("document.activeElement.id") == "username"
    page.keyboard.type(cast.parent)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.type") == "submit"
    # Every control shows where focus is.
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert urlsplit(page.url).path == "/account", page.url

    # A failed registration: focus lands on the summary, whose links lead to the fields.
    page.goto(f"{provider.url}/register")
    page.focus("button[type=submit]:has-text('Create Account')")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    focus_lands_on(page, "error-summary")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('href')") == "#first_name"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "first_name"
    assert page.get_attribute("#first_name", "aria-invalid") == "true"


# --- the console -----------------------------------------------------------------------------------
def test_console_pages_pass_axe_at_both_widths(
    context: BrowserContext, provider: Provider, cast: Cast
) -> None:
    base = provider.url
    audit = Audit()
    page = context.new_page()
    page.goto(f"{base}/admin/")
    audit.check(page, "console: sign in")
    page.fill("#username", cast.staff)
    page.fill("#password", cast.staff_password)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/admin/signin/change-password*")
    audit.check(page, "console: change password")
    page.fill("#current_password", cast.staff_password)
    page.fill("#new_password", STAFF_PASSWORD)
    page.fill("#confirm_password", STAFF_PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/admin/enrol*")
    audit.check(page, "console: enrol an authenticator")
    key = page.inner_text("#totp-key").strip()
    page.fill("#code", pyotp.TOTP(key).now())
    with page.expect_navigation():
        page.click("main button[type=submit]")
    page.wait_for_load_state()
    audit.check(page, "console: backup codes")

    page.goto(f"{base}/admin/accounts?q={cast.parent}")
    audit.check(page, "console: search")
    with page.expect_navigation():
        page.locator("#accounts tbody tr th a").first.click()
    page.wait_for_load_state()
    audit.check(page, "console: an account")
    page.goto(page.url.rstrip("/") + "/delete")
    audit.check(page, "console: delete an account")
    for name, path in (
        ("console: home", "/admin/"),
        ("console: district options", "/admin/district"),
        ("console: password policies", "/admin/policies"),
        ("console: audit trail", "/admin/audit"),
        ("console: staff", "/admin/staff"),
        ("console: students", "/admin/students"),
        ("console: reset passwords", "/admin/reset-passwords"),
        ("console: not found", "/admin/accounts/not-an-account"),
    ):
        page.goto(base + path)
        audit.check(page, name)
    policy = page.goto(f"{base}/admin/policies")
    assert policy is not None
    first_policy = page.locator("main a[href*='/admin/policies/']").first
    if first_policy.count():
        with page.expect_navigation():
            first_policy.click()
        page.wait_for_load_state()
        audit.check(page, "console: a school's policy")

    # Signing in again asks for the code.
    with page.expect_navigation():
        page.click("header button[type=submit]")
    page.goto(f"{base}/admin/signin")
    page.fill("#username", cast.staff)
    page.fill("#password", STAFF_PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/admin/signin/code*")
    audit.check(page, "console: code")
    audit.assert_clean()


# --- the demo portal -------------------------------------------------------------------------------
def test_portal_pages_pass_axe_at_both_widths(
    context: BrowserContext, provider: Provider, portal: Portal, cast: Cast
) -> None:
    audit = Audit()
    page = context.new_page()
    page.goto(f"{portal.url}/")
    audit.check(page, "portal: signed out")
    page.goto(f"{portal.url}/help")
    audit.check(page, "portal: help, signed out")
    page.goto(f"{portal.url}/")
    page.click("#sign-in")
    page.wait_for_url(f"{provider.url}/signin?request=*")
    audit.check(page, "sign-in for a portal")
    sign_in(page, cast.parent, PASSWORD)
    page.wait_for_url(f"{portal.url}/")
    audit.check(page, "portal: a student's records")
    recorded, unrecorded = cast.students
    for name, path in (
        ("portal: not available", f"/students/{unrecorded}"),
        ("portal: printer view", f"/students/{recorded}/print"),
        ("portal: help", "/help"),
        ("portal: not found", "/no-such-page"),
        ("portal: unknown student", "/students/not-a-student"),
    ):
        page.goto(portal.url + path)
        audit.check(page, name)
    audit.assert_clean()
