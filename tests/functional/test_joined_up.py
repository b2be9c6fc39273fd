"""The provider joined up with its portals: a plain home page, and "Back to <portal>" in /account."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from idp.accounts.models import Account
from idp.config import Settings
from tests.conftest import PASSWORD, RegisteredTestClient, settings_for_tests
from tests.functional import oidc


@pytest.fixture
def settings(database_url: str, keys_dir: Path) -> Settings:
    return settings_for_tests(database_url, keys_dir)


@pytest.fixture
def dana(make_account: Callable[..., Account]) -> Account:
    return make_account(
        username="dana.rivera", email="dana@example.org", first_name="Dana", last_name="Rivera"
    )


def page(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    return html.unescape(response.get_data(as_text=True))


def test_the_root_is_a_home_page_with_the_four_ways_in(client: FlaskClient) -> None:
    body = page(client, "/")
    assert "invalid_request" not in body
    for path, label in (
        ("/signin", "Sign In"),
        ("/register", "Create Account"),
        ("/account", "Account Preferences"),
        ("/signin/trouble", "Having trouble signing in?"),
    ):
        assert f'href="{path}"' in body and label in body


def test_signed_in_the_home_page_names_the_account_and_offers_preferences(
    client: FlaskClient, dana: Account
) -> None:
    with client.application.app_context():
        assert oidc.sign_in(client, "dana.rivera", PASSWORD).status_code == 303
    body = page(client, "/")
    assert "Signed in as Dana Rivera (dana.rivera)." in body
    assert 'href="/account"' in body and 'href="/signin"' not in body


def test_account_links_back_to_the_registered_portal_it_came_from(
    client: FlaskClient, dana: Account, make_client: Callable[..., RegisteredTestClient]
) -> None:
    portal = make_client(
        name="Lakeside Portal",
        redirect_uris=["https://portal.example.org/callback"],
        post_logout_redirect_uris=["https://portal.example.org/"],
    )
    # Not signed in yet: the portal is remembered across the sign-in.
    assert client.get(f"/account?client_id={portal.client_id}").status_code == 303
    with client.application.app_context():
        assert oidc.sign_in(client, "dana.rivera", PASSWORD).status_code == 303
    for path in ("/account", "/account/students"):
        body = page(client, path)
        assert '<a href="https://portal.example.org/" id="back-to-portal">Back to Lakeside Portal</a>' in body


def test_a_portal_without_a_logout_uri_is_reached_at_its_redirect_uris_origin(
    client: FlaskClient, dana: Account, make_client: Callable[..., RegisteredTestClient]
) -> None:
    portal = make_client(name="Hill Portal", redirect_uris=["https://hill.example.org/oidc/callback"])
    with client.application.app_context():
        assert oidc.sign_in(client, "dana.rivera", PASSWORD).status_code == 303
    body = page(client, f"/account?client_id={portal.client_id}")
    assert '<a href="https://hill.example.org/" id="back-to-portal">Back to Hill Portal</a>' in body


@pytest.mark.parametrize("client_id", ["no-such-client", "https://evil.example/", "x" * 500])
def test_an_unregistered_client_id_gives_no_back_link(
    client: FlaskClient, dana: Account, client_id: str
) -> None:
    with client.application.app_context():
        assert oidc.sign_in(client, "dana.rivera", PASSWORD).status_code == 303
    response = client.get("/account", query_string={"client_id": client_id})
    assert response.status_code == 200
    assert 'id="back-to-portal"' not in response.get_data(as_text=True)
    assert "idp_portal" not in response.headers.get("Set-Cookie", "")


def test_the_provider_has_a_favicon(client: FlaskClient) -> None:
    assert 'rel="icon" href="/static/favicon.svg"' in page(client, "/signin")
    with client.get("/static/favicon.svg") as icon:
        assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
