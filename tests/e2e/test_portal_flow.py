"""The portal's side of a sign-in against the real provider (gunicorn), the portal in-process.

The portal runs under Flask's test client with a frozen clock, so idle time passes without
sleeping; its Authlib client talks to the provider over real HTTP. The browser's part at the
provider is ``requests``, hop by hop.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from idp.clock import FrozenClock
from relying_party_demo import create_app
from relying_party_demo.config import PortalSettings
from relying_party_demo.provider import CLIENT_NAME
from relying_party_demo.web_session import ServerSession
from tests.conftest import AuthRequest, csrf_token, redirect_params
from tests.e2e.conftest import (
    HTTP_TIMEOUT,
    District,
    Provider,
    create_student,
    free_port,
    provider_env,
    run_idp,
)
from tests.e2e.flows import continue_authorization, describe, sign_in, start_authorization
from tests.e2e.portal import PortalClient, register_portal

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_backends("postgresql")]


@pytest.fixture(scope="module")
def portal_client(district: District) -> PortalClient:
    # Nothing listens there: the provider's redirects are handed to the test client by hand.
    return register_portal(district, f"http://127.0.0.1:{free_port()}", backchannel=False)


@dataclass
class InProcessPortal:
    app: Flask
    clock: FrozenClock
    base_url: str

    def browser(self) -> FlaskClient:
        return self.app.test_client()


PortalFactory = Callable[..., InProcessPortal]


@pytest.fixture
def make_portal(portal_client: PortalClient, provider: Provider, tmp_path: Path) -> Iterator[PortalFactory]:
    """An in-process portal whose clock starts ``behind`` real time (tokens carry real times)."""
    apps: list[Flask] = []

    def make(*, idle_seconds: int = 900, behind: timedelta = timedelta(0)) -> InProcessPortal:
        clock = FrozenClock(datetime.now(UTC).replace(microsecond=0) - behind)
        settings = PortalSettings(
            client_id=portal_client.client_id,
            client_secret=portal_client.client_secret,
            issuer=provider.url,
            base_url=portal_client.base_url,
            secret_key="flow-test-secret-key-that-is-long-enough-0123",
            idle_seconds=idle_seconds,
            database_url=f"sqlite:///{tmp_path / f'portal-{len(apps)}.db'}",
        )
        app = create_app(settings, clock=clock)
        app.config["TESTING"] = True
        apps.append(app)
        return InProcessPortal(app, clock, portal_client.base_url)

    yield make
    for app in apps:
        app.extensions["relying_party_demo"].engine.dispose()


@pytest.fixture
def portal(make_portal: PortalFactory) -> InProcessPortal:
    return make_portal()


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def local(url: str) -> str:
    """The path and query of a portal URL, for the test client."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def start(browser: FlaskClient) -> str:
    """Press Sign In: the portal answers with the provider's /authorize URL."""
    response = browser.get("/login")
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"]


def through_provider(
    http: requests.Session,
    provider: Provider,
    district: District,
    portal: InProcessPortal,
    authorize_url: str,
) -> str:
    """The browser at the provider: sign in if asked; return the portal callback URL it is sent to."""
    first = http.get(authorize_url, allow_redirects=False, timeout=HTTP_TIMEOUT)
    with first:
        if first.status_code == 302:  # already signed in at the provider: straight back
            return first.headers["Location"]
    request_id = start_authorization(http, authorize_url)
    path = sign_in(
        http,
        page_url=provider.url,
        post_url=provider.url,
        request_id=request_id,
        username=district.username,
        password=district.password,
    )
    return continue_authorization(http, provider.url, path, f"{portal.base_url}/callback")


def full_sign_in(
    browser: FlaskClient,
    http: requests.Session,
    provider: Provider,
    district: District,
    portal: InProcessPortal,
) -> None:
    callback = through_provider(http, provider, district, portal, start(browser))
    arrived = browser.get(local(callback))
    assert arrived.status_code == 302 and arrived.headers["Location"] == "/", arrived.get_data(as_text=True)


def test_the_authorization_request_carries_pkce_state_nonce_and_the_scopes(
    portal: InProcessPortal, provider: Provider
) -> None:
    params = redirect_params(start(portal.browser()))
    assert params["response_type"] == "code" and params["client_id"]
    assert params["redirect_uri"] == f"{portal.base_url}/callback"
    assert params["scope"] == "openid profile email students offline_access"
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 20 and len(params["nonce"]) >= 20
    # A sign-in older than the portal's idle time is not reused silently.
    assert params["max_age"] == "900" and "prompt" not in params


def test_sign_in_then_sign_out_at_the_provider_with_the_id_token_hint(
    portal: InProcessPortal, provider: Provider, district: District
) -> None:
    browser = portal.browser()
    with requests.Session() as http:
        full_sign_in(browser, http, provider, district, portal)
        home = browser.get("/").get_data(as_text=True)
        assert "Welcome, Dana Rivera" in text_of(home)
        assert re.findall(r'<a class="tab" [^>]*>([^<]+)</a>', home) == ["Zoe"]

        signed_out = browser.post("/logout", data={"csrf_token": csrf_token(home)})
        assert signed_out.status_code == 302
        end_session = signed_out.headers["Location"]
        params = redirect_params(end_session)
        assert end_session.startswith(f"{provider.url}/logout?")
        assert params["post_logout_redirect_uri"] == f"{portal.base_url}/"
        assert params["id_token_hint"].count(".") == 2 and params["state"]
        # The portal session ended at once; the provider signs out without asking (the hint
        # names its session) and sends the browser back with the state.
        assert "Welcome" not in browser.get("/").get_data(as_text=True)
        back = http.get(end_session, allow_redirects=False, timeout=HTTP_TIMEOUT)
        assert back.status_code == 303, describe(back)
        assert back.headers["Location"] == f"{portal.base_url}/?state={params['state']}"
        page = browser.get(local(back.headers["Location"])).get_data(as_text=True)
        assert "You have signed out." in page and 'id="sign-in"' in page

        # Signed out at the provider: a silent sign-in is refused.
        silent = AuthRequest(district.client_id, redirect_uri=district.redirect_uri, extra={"prompt": "none"})
        answer = http.get(silent.url(provider.url), allow_redirects=False, timeout=HTTP_TIMEOUT)
        assert answer.status_code == 302, describe(answer)
        assert redirect_params(answer.headers["Location"])["error"] == "login_required"


def test_an_id_token_with_another_nonce_is_refused_with_a_page(
    portal: InProcessPortal, provider: Provider, district: District
) -> None:
    browser = portal.browser()
    authorize_url = start(browser)
    state = redirect_params(authorize_url)["state"]
    # As if this browser had started another sign-in: the nonce it expects is not the one sent.
    key = f"_state_{CLIENT_NAME}_{state}"
    with browser.session_transaction() as session:
        assert isinstance(session, ServerSession)
        pending = dict(session[key])
        pending["data"] = {**pending["data"], "nonce": "a-nonce-this-sign-in-never-sent"}
        session[key] = pending
    with requests.Session() as http:
        callback = through_provider(http, provider, district, portal, authorize_url)
    response = browser.get(local(callback))
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "The portal could not verify the sign-in" in html and "wrong nonce" in html
    assert "Return to Sign In Page" in html
    assert "Welcome" not in browser.get("/").get_data(as_text=True)


def test_a_callback_in_another_browser_is_refused(
    portal: InProcessPortal, provider: Provider, district: District
) -> None:
    started_here = portal.browser()
    with requests.Session() as http:
        callback = through_provider(http, provider, district, portal, start(started_here))
    elsewhere = portal.browser()
    response = elsewhere.get(local(callback))
    assert response.status_code == 400
    assert "not started in this browser" in response.get_data(as_text=True)
    # The code was not spent: the browser that started the sign-in still completes it.
    assert started_here.get(local(callback)).headers["Location"] == "/"


def test_an_answer_naming_another_issuer_is_refused(portal: InProcessPortal) -> None:
    browser = portal.browser()
    state = redirect_params(start(browser))["state"]
    response = browser.get(f"/callback?code=x&state={state}&iss=https://evil.example")
    assert response.status_code == 400
    assert "does not use" in response.get_data(as_text=True)


def test_a_cancelled_sign_in_is_refused_with_a_page(portal: InProcessPortal) -> None:
    browser = portal.browser()
    state = redirect_params(start(browser))["state"]
    response = browser.get(f"/callback?error=access_denied&state={state}")
    assert response.status_code == 400 and "cancelled" in response.get_data(as_text=True)


def test_after_the_idle_time_the_portal_signs_out_and_offers_the_last_page_after_signing_in_again(
    make_portal: PortalFactory, provider: Provider, district: District
) -> None:
    # The ID tokens carry the provider's real times, which the portal checks with its own clock:
    # a short idle time, and a clock a little behind, let it pass without any token expiring.
    portal = make_portal(idle_seconds=30, behind=timedelta(seconds=20))
    browser = portal.browser()
    with requests.Session() as http:
        full_sign_in(browser, http, provider, district, portal)
        assert browser.get("/students/100234").status_code == 200
        assert browser.get("/help").status_code == 200
        browser.get("/")  # the start page is not the last page worth offering
        portal.clock.advance(timedelta(seconds=30))

        timed_out = browser.get("/students/100234").get_data(as_text=True)
        assert "You have been signed out. Return to Sign In Page." in text_of(timed_out)
        assert 'id="sign-in"' in browser.get("/").get_data(as_text=True)

        # Same browser, same user, signed in again (the provider still knows the browser).
        full_sign_in(browser, http, provider, district, portal)
        home = browser.get("/").get_data(as_text=True)
        assert '<a href="/help">Reload the last page you viewed</a>' in home
        # Offered once, on the first page after signing in.
        assert "Reload the last page" not in browser.get("/").get_data(as_text=True)


def test_another_user_in_the_same_browser_is_not_offered_the_previous_users_page(
    portal: InProcessPortal, provider: Provider, district: District
) -> None:
    browser = portal.browser()
    with requests.Session() as http:
        full_sign_in(browser, http, provider, district, portal)
        browser.get("/students/100234")
    last_page = browser.get_cookie("rp_last_page")
    assert last_page is not None
    # Another account's session in this browser: the cookie is not theirs.
    loaded = portal.app.extensions["relying_party_demo"].last_pages.load(last_page.value, "someone-else")
    assert loaded is None


def test_after_a_portal_timeout_signing_in_again_asks_for_the_password(
    make_portal: PortalFactory, provider: Provider, district: District
) -> None:
    portal = make_portal(idle_seconds=30, behind=timedelta(seconds=20))
    browser = portal.browser()
    with requests.Session() as http:
        full_sign_in(browser, http, provider, district, portal)
        # Still signed in: another sign-in at this portal would pass silently.
        assert browser.get("/students/100234").status_code == 200
        portal.clock.advance(timedelta(seconds=30))
        assert "You have been signed out." in text_of(browser.get("/").get_data(as_text=True))

        authorize_url = start(browser)
        assert redirect_params(authorize_url)["prompt"] == "login"
        # The provider's session is still alive, yet it asks for the password (303 to /signin).
        request_id = start_authorization(http, authorize_url)
        # A cancelled attempt changes nothing: the next one asks again.
        assert redirect_params(start(browser))["prompt"] == "login"
        assert request_id
        # Only the password brings the browser back to the portal.
        callback = through_provider(http, provider, district, portal, start(browser))
        assert browser.get(local(callback)).headers["Location"] == "/"
        assert 'id="sign-in"' not in browser.get("/").get_data(as_text=True)
        # Signed in with the password: the next sign-in here is an ordinary one again.
        assert browser.get_cookie("rp_sign_in_again") is None


def test_a_student_added_in_account_preferences_appears_in_the_open_portal(
    portal: InProcessPortal, provider: Provider, district: District
) -> None:
    # A parent of our own, so the district's shared parent keeps its one student.
    env = provider_env(district.database_url, district.keys_dir, issuer="http://127.0.0.1")
    create_student(
        env, "300771", "Mia", "Okafor", school="LES", access_id="MO-3077", access_password="maple-kite-71"
    )
    run_idp(
        env,
        *("accounts", "create", "--username", "Ada.Okafor", "--email", "ada.okafor@example.org"),
        *("--password", district.password, "--first-name", "Ada", "--last-name", "Okafor"),
    )
    browser = portal.browser()
    with requests.Session() as http:
        request_id = start_authorization(http, start(browser))
        path = sign_in(
            http,
            page_url=provider.url,
            post_url=provider.url,
            request_id=request_id,
            username="Ada.Okafor",
            password=district.password,
        )
        callback = continue_authorization(http, provider.url, path, f"{portal.base_url}/callback")
        assert browser.get(local(callback)).headers["Location"] == "/"
        assert "No students yet" in text_of(browser.get("/").get_data(as_text=True))

        # Account Preferences, from the portal's header, and a student added there.
        to_account = browser.get("/account-preferences")
        assert to_account.status_code == 302
        preferences = http.get(to_account.headers["Location"], timeout=HTTP_TIMEOUT)
        assert "Back to Demo School Portal" in preferences.text
        students_page = http.get(f"{provider.url}/account/students", timeout=HTTP_TIMEOUT)
        added = http.post(
            f"{provider.url}/account/students",
            data={
                "csrf_token": csrf_token(students_page.text),
                "name": "Mia",
                "access_id": "MO-3077",
                "access_password": "maple-kite-71",
                "relationship": "Mother",
            },
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
        assert added.status_code == 303, describe(added)

        # Back at the portal, still signed in: the new tab is there at once.
        home = browser.get("/").get_data(as_text=True)
        assert '<a class="tab" href="/students/300771"' in home
        assert "No students yet" not in text_of(home)

        # A name changed at the provider, the portal left alone: within a minute it is the old one...
        profile = http.get(f"{provider.url}/account?edit=name", timeout=HTTP_TIMEOUT)
        renamed = http.post(
            f"{provider.url}/account/name",
            data={"csrf_token": csrf_token(profile.text), "first_name": "Adaeze", "last_name": "Okafor"},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
        assert renamed.status_code == 303, describe(renamed)
        assert "Welcome, Ada Okafor" in text_of(browser.get("/").get_data(as_text=True))
        # ...and after it the new one; 11 minutes outlive the access token, so the refresh token works.
        portal.clock.advance(timedelta(minutes=11))
        assert "Welcome, Adaeze Okafor" in text_of(browser.get("/").get_data(as_text=True))
