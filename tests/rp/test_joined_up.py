"""The portal joined up with the provider: Account Preferences in the header, Help's links."""

from __future__ import annotations

import html

from flask.testing import FlaskClient

from relying_party_demo.views import REFRESH_CLAIMS
from relying_party_demo.web_session import ServerSession
from tests.rp.conftest import CLIENT_ID, ISSUER, SignIn


def test_the_header_links_to_account_preferences_at_the_provider(
    portal: FlaskClient, sign_in_as: SignIn
) -> None:
    sign_in_as()
    body = portal.get("/").get_data(as_text=True)
    assert (
        '<a class="preferences" href="/account-preferences" id="account-preferences">Account Preferences</a>'
        in body
    )
    response = portal.get("/account-preferences")
    assert response.status_code == 302
    # The provider decides the way back from the client id (its registered URIs), not from a URL.
    assert response.headers["Location"] == f"{ISSUER}/account?client_id={CLIENT_ID}"
    with portal.session_transaction() as session:
        assert isinstance(session, ServerSession) and session[REFRESH_CLAIMS] is True


def test_account_preferences_needs_a_session(portal: FlaskClient) -> None:
    response = portal.get("/account-preferences")
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_help_links_to_account_preferences_and_the_trouble_page(
    portal: FlaskClient, sign_in_as: SignIn
) -> None:
    signed_out = html.unescape(portal.get("/help").get_data(as_text=True))
    assert f'href="{ISSUER}/signin/trouble" id="help-trouble">Having trouble signing in?</a>' in signed_out
    sign_in_as()
    body = html.unescape(portal.get("/help").get_data(as_text=True))
    assert 'href="/account-preferences" id="help-account">Account Preferences</a>' in body
    assert "change your password on the district's sign-in page" not in body


def test_a_missing_page_keeps_the_portals_frame_while_signed_in(
    portal: FlaskClient, sign_in_as: SignIn
) -> None:
    sign_in_as()
    for path in ("/nope", "/students/100310", "/students/900001/export.xml"):
        response = portal.get(path)
        body = response.get_data(as_text=True)
        assert response.status_code == 404
        assert "Dana Rivera" in body and ">Sign Out<" in body and 'id="account-preferences"' in body


def test_no_printer_view_is_offered_where_there_is_nothing_to_print(
    portal: FlaskClient, sign_in_as: SignIn
) -> None:
    sign_in_as()
    assert "/students/900001/print" not in portal.get("/students/900001").get_data(as_text=True)
    assert "/students/100234/print" in portal.get("/students/100234").get_data(as_text=True)


def test_every_page_has_a_favicon(portal: FlaskClient, sign_in_as: SignIn) -> None:
    assert 'rel="icon" href="/static/favicon.svg"' in portal.get("/").get_data(as_text=True)
    sign_in_as()
    assert 'rel="icon" href="/static/favicon.svg"' in portal.get("/students/100234/print").get_data(
        as_text=True
    )
    with portal.get("/static/favicon.svg") as icon:
        assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"


def test_the_previous_sign_in_is_shown_as_text_not_only_as_a_tooltip(
    portal: FlaskClient, sign_in_as: SignIn
) -> None:
    sign_in_as()
    body = portal.get("/").get_data(as_text=True)
    assert '<span class="previous-sign-in" id="previous-sign-in">This is your first sign-in</span>' in body


def test_the_printer_view_names_the_district(portal: FlaskClient, sign_in_as: SignIn) -> None:
    sign_in_as()
    body = portal.get("/students/100234/print").get_data(as_text=True)
    assert '<p class="masthead">School District · Demo School Portal</p>' in body


def test_the_district_name_is_a_setting() -> None:
    from relying_party_demo.config import PortalSettings

    env = {"RP_CLIENT_ID": "c", "RP_CLIENT_SECRET": "s", "RP_DISTRICT_NAME": " Lakeside Unified "}
    assert PortalSettings.from_env(env).district_name == "Lakeside Unified"
    assert PortalSettings.from_env({**env, "RP_DISTRICT_NAME": ""}).district_name == "School District"


def test_an_unknown_time_zone_is_refused_at_start() -> None:
    import pytest

    from relying_party_demo.config import ConfigError, PortalSettings

    with pytest.raises(ConfigError, match="RP_TIMEZONE"):
        PortalSettings.from_env({"RP_CLIENT_ID": "c", "RP_CLIENT_SECRET": "s", "RP_TIMEZONE": "Mars/Base"})
