"""Error pages and form messages a person reads are Spanish for a Spanish reader: Werkzeug's and
Authlib's English descriptions never reach a page, WTForms' own messages come from its Spanish
catalogue, and the JSON errors programs read stay in English (RFC 6749 5.2)."""

from __future__ import annotations

import html
from collections.abc import Callable

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from idp.accounts.models import Account
from tests.admin_fixtures import csrf_of
from tests.conftest import AuthRequest

SPANISH = {"Accept-Language": "es-ES,es;q=0.9"}
StaffClient = Callable[..., tuple[FlaskClient, Account]]


def page_text(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def test_a_missing_page_and_a_wrong_method_are_told_in_spanish(client: FlaskClient) -> None:
    missing = client.get("/no-such-page", headers=SPANISH)
    wrong_method = client.delete("/signin", headers=SPANISH)

    assert missing.status_code == 404 and wrong_method.status_code == 405
    assert "Esta página no existe." in page_text(missing)
    assert "Esta página no acepta ese tipo de solicitud." in page_text(wrong_method)
    assert "The requested URL" not in page_text(missing)  # Werkzeug's description
    assert wrong_method.headers["Allow"]


def test_an_unknown_portal_gets_a_spanish_sentence_not_authlibs_description(client: FlaskClient) -> None:
    response = client.get("/authorize", query_string=AuthRequest("no-such-portal").params(), headers=SPANISH)

    assert response.status_code == 400 and "Location" not in response.headers
    shown = page_text(response)
    assert "no indica un portal que el distrito conozca" in shown
    assert "does not exist" not in shown
    assert "invalid_client" in shown  # the code, for whoever helps the family


def test_json_errors_for_programs_stay_in_english(client: FlaskClient) -> None:
    response = client.get("/token", headers=SPANISH)

    assert response.status_code == 405
    assert response.json == {
        "error": "invalid_request",
        "error_description": "This page does not accept that kind of request.",
    }


def test_wtforms_own_message_is_spanish_in_the_console(staff_client: StaffClient) -> None:
    client, _ = staff_client()
    page = client.get("/admin/district?lang=es")
    refused = client.post(
        "/admin/district",
        data={"csrf_token": csrf_of(page.text), "lockout_threshold": "diez", "lockout_minutes": "5"},
        headers=SPANISH,
    )

    assert refused.status_code == 400
    shown = page_text(refused)
    assert "No es un valor entero válido" in shown, shown  # WTForms' IntegerField, translated
    assert "Not a valid integer value" not in shown
