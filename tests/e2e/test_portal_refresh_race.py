"""Two requests of one portal session find its claims stale together: one refresh serves both.

The portal runs in-process (a frozen clock makes the tokens old without waiting) on SQLite and on
PostgreSQL; the provider is real gunicorn, reached over HTTP. Were both requests to spend the same
refresh token, the provider would take the second use as theft and revoke the family, signing the
family out of the portal; the session row's lock makes the second request wait and use the tokens
the first one stored.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from relying_party_demo.freshness import HeldTokens
from relying_party_demo.models import StoredSession
from relying_party_demo.sessions import SessionStore
from tests.conftest import drop_postgres_database, postgres_url, recreate_postgres_database
from tests.e2e.conftest import District, Provider, free_port
from tests.e2e.portal import PortalClient, register_portal
from tests.e2e.test_portal_flow import InProcessPortal, full_sign_in, text_of

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_backends("postgresql")]

PORTAL_POSTGRES_DB = f"rp_race_{os.getpid()}"
# Past the access token's life (IDP_ACCESS_TOKEN_SECONDS, 600): the claims need a refresh token.
TOKENS_EXPIRED = timedelta(minutes=11)
WAIT = 60.0  # bounds a wait only; the requests take well under a second when the machine is idle


@pytest.fixture(scope="module")
def portal_client(district: District) -> PortalClient:
    # Nothing listens there: the provider's redirects are handed to the test client by hand.
    return register_portal(district, f"http://127.0.0.1:{free_port()}", backchannel=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def portal(
    request: pytest.FixtureRequest, portal_client: PortalClient, provider: Provider, tmp_path: Path
) -> Iterator[InProcessPortal]:
    from datetime import UTC, datetime

    from idp.clock import FrozenClock
    from relying_party_demo import create_app
    from relying_party_demo.config import PortalSettings

    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp_path / 'portal.db'}"
    else:
        recreate_postgres_database(PORTAL_POSTGRES_DB)
        database_url = postgres_url(PORTAL_POSTGRES_DB)
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    settings = PortalSettings(
        client_id=portal_client.client_id,
        client_secret=portal_client.client_secret,
        issuer=provider.url,
        base_url=portal_client.base_url,
        secret_key="race-test-secret-key-that-is-long-enough-0123",
        database_url=database_url,
    )
    app = create_app(settings, clock=clock)
    app.config["TESTING"] = True
    try:
        yield InProcessPortal(app, clock, portal_client.base_url)
    finally:
        app.extensions["relying_party_demo"].engine.dispose()
        if request.param == "postgresql":
            drop_postgres_database(PORTAL_POSTGRES_DB)


class ProviderRows:
    """The provider's own record of a portal's token families, read from its database."""

    def __init__(self, database_url: str, client_id: str) -> None:
        self.engine = create_engine(database_url)
        self.client_id = client_id

    def families(self) -> set[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id FROM refresh_token_family WHERE client_id = :client"),
                {"client": self.client_id},
            )
            return {row.id for row in rows}

    def family(self, family_id: str) -> tuple[int, int, bool]:
        """Its refresh tokens, how many were spent at /token, and whether it was revoked."""
        with self.engine.connect() as conn:
            issued, spent = conn.execute(
                text("SELECT count(*), count(rotated_at) FROM refresh_token WHERE family_id = :family"),
                {"family": family_id},
            ).one()
            revoked_at = conn.execute(
                text("SELECT revoked_at FROM refresh_token_family WHERE id = :family"), {"family": family_id}
            ).scalar_one()
        return issued, spent, revoked_at is not None

    def reuses(self, family_id: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM audit_event WHERE name = 'refresh_token.reused'"
                        " AND client_id = :client"
                    ),
                    {"client": self.client_id},
                ).scalar_one()
            )


@pytest.fixture
def provider_rows(district: District, portal_client: PortalClient) -> Iterator[ProviderRows]:
    rows = ProviderRows(district.database_url, portal_client.client_id)
    yield rows
    rows.engine.dispose()


def visit_together(portal: InProcessPortal, cookie: str, paths: list[str]) -> dict[str, tuple[int, str]]:
    """Request ``paths`` at once, each from its own thread with the same session cookie.

    Each request waits, once it has read the session's tokens (and found them stale), until every
    other one has too: all of them decide to refresh before any of them may, whatever the load.
    """
    all_looked = threading.Barrier(len(paths))
    answers: dict[str, tuple[int, str]] = {}
    failures: list[BaseException] = []
    read_tokens = SessionStore.tokens

    def tokens_then_wait(store: SessionStore, row: StoredSession) -> HeldTokens | None:
        found = read_tokens(store, row)
        all_looked.wait(timeout=WAIT)
        return found

    def visit(path: str) -> None:
        browser: FlaskClient = portal.browser()
        browser.set_cookie("rp_session", cookie)
        try:
            response = browser.get(path)
            answers[path] = (response.status_code, text_of(response.get_data(as_text=True)))
        except BaseException as failure:  # reported below, not lost with the thread
            failures.append(failure)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SessionStore, "tokens", tokens_then_wait)
        threads = [threading.Thread(target=visit, args=(path,)) for path in paths]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=WAIT)
    assert not failures, failures
    return answers


def test_a_page_and_its_printer_view_refresh_the_tokens_once_and_the_family_stays_signed_in(
    portal: InProcessPortal, provider: Provider, district: District, provider_rows: ProviderRows
) -> None:
    before = provider_rows.families()
    browser = portal.browser()
    with requests.Session() as http:
        full_sign_in(browser, http, provider, district, portal)
    (family,) = provider_rows.families() - before
    assert provider_rows.family(family) == (1, 0, False)
    session_cookie = browser.get_cookie("rp_session")
    assert session_cookie is not None

    portal.clock.advance(TOKENS_EXPIRED)
    student = district.student
    answers = visit_together(portal, session_cookie.value, ["/", f"/students/{student.sis_id}/print"])

    # Both pages rendered for the signed-in family...
    home_status, home = answers["/"]
    print_status, printed = answers[f"/students/{student.sis_id}/print"]
    assert (home_status, print_status) == (200, 200), answers
    assert "Welcome, Dana Rivera" in home and f"{student.first_name} {student.last_name}" in printed
    # ...and exactly one refresh reached the provider's /token: one token spent, one new.
    assert provider_rows.family(family) == (2, 1, False)
    assert provider_rows.reuses(family) == 0

    # The family lives on: the next refresh, from the token the first request stored, works too.
    portal.clock.advance(TOKENS_EXPIRED)
    assert "Welcome, Dana Rivera" in text_of(browser.get("/").get_data(as_text=True))
    assert provider_rows.family(family) == (3, 2, False)
