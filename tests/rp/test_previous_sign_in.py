"""The previous sign-in in the header: visible text, in the family's language and the district's zone,
with the device the provider names (browser and system), never an address."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from babel import Locale
from flask import Flask
from flask.testing import FlaskClient

from relying_party_demo.previous_sign_in import moment_text, previous_sign_in
from tests.rp.conftest import SignIn, dana_claims

MOMENT = datetime(2026, 3, 2, 14, 5, tzinfo=UTC)
CHICAGO = ZoneInfo("America/Chicago")


@pytest.mark.parametrize(
    ("zone", "locale", "expected"),
    [
        (CHICAGO, "en", "Monday, March 2, 2026, 8:05\u202fAM CST"),
        (ZoneInfo("UTC"), "en", "Monday, March 2, 2026, 2:05\u202fPM UTC"),
        # No Spanish abbreviation for Chicago's zone: its name, not an offset.
        (CHICAGO, "es", "lunes, 2 de marzo de 2026, 8:05 hora estándar central"),
        (ZoneInfo("Europe/Madrid"), "es", "lunes, 2 de marzo de 2026, 15:05 CET"),
    ],
)
def test_the_moment_is_written_in_the_language_and_the_zone(
    zone: ZoneInfo, locale: str, expected: str
) -> None:
    assert moment_text(MOMENT.astimezone(zone), Locale.parse(locale)) == expected


def sentence(app: Flask, claims: dict[str, object], lang: str = "en") -> str:
    with app.test_request_context(f"/?lang={lang}"):
        return previous_sign_in(claims, CHICAGO)


def test_the_sentence_names_the_time_and_the_device(portal_app: Flask) -> None:
    at = int(MOMENT.timestamp())
    assert (
        sentence(portal_app, {"last_login_at": at, "last_login_device": "Firefox (Windows)"})
        == "Previous sign-in: Monday, March 2, 2026, 8:05\u202fAM CST from Firefox (Windows)"
    )
    # A provider that names no device (or something that is not a device's label): the time alone.
    for device in (None, "", 7, "x" * 65):
        assert sentence(portal_app, {"last_login_at": at, "last_login_device": device}) == (
            "Previous sign-in: Monday, March 2, 2026, 8:05\u202fAM CST"
        )
    for first in ({}, {"last_login_at": True}, {"last_login_at": "yesterday"}):
        assert sentence(portal_app, first) == "This is your first sign-in"


def test_the_sentence_is_spanish_for_a_spanish_reader(portal_app: Flask) -> None:
    claims = {"last_login_at": int(MOMENT.timestamp()), "last_login_device": "Safari (iOS)"}
    text = sentence(portal_app, claims, "es")
    assert "lunes, 2 de marzo de 2026, 8:05 hora estándar central" in text
    assert "Safari (iOS)" in text


def test_the_header_shows_it_as_text_with_the_device(portal: FlaskClient, sign_in_as: SignIn) -> None:
    sign_in_as(dana_claims(last_login_at=int(MOMENT.timestamp()), last_login_device="Chrome (Android)"))
    body = html.unescape(portal.get("/").get_data(as_text=True))
    assert (
        '<span class="previous-sign-in" id="previous-sign-in">'
        "Previous sign-in: Monday, March 2, 2026, 2:05\u202fPM UTC from Chrome (Android)</span>"
    ) in body
