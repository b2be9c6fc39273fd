"""Waits and link lives on the pages: plural forms, and minutes rounded up (issue 16)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from idp.config import Settings
from idp.students.models import Student
from tests.conftest import csrf_token, settings_for_tests
from tests.functional import oidc

LOCKED = "This account is locked because of too many failed sign-in attempts. Try again in {}."
LINK_LIFE = (
    "If the username and email address belong to an account, we have sent an email with a link "
    "to reset the password. The link works for {}."
)
PAUSED = "Too many attempts for this Access ID. Try again in {}."
RATE_LIMITED = "Too many attempts from your network. Try again in {}."
PASSWORD = "lantern-orchard-velvet-93"
# What the pages said before: a wait rounded down to nothing, or a singular number with a plural noun.
WRONG = re.compile(r"\b(0 minutes?|1 minutes)\b")


@pytest.fixture
def settings(database_url: str, keys_dir: Path, request: pytest.FixtureRequest) -> Settings:
    """The test's own settings, given by ``parametrize(..., indirect=["settings"])``."""
    return settings_for_tests(database_url, keys_dir, **getattr(request, "param", {}))


@pytest.fixture
def zoe(make_student: Callable[..., Student]) -> Student:
    return make_student(
        sis_id="100234", first_name="Zoe", last_name="Rivera", access_id="ZR-1", access_password="orchid-42"
    )


def text(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def sign_in(client: FlaskClient, password: str) -> str:
    with client.application.app_context():
        return text(oidc.sign_in(client, "dana.rivera", password))


def ask_for_reset(client: FlaskClient) -> TestResponse:
    with client.application.app_context():
        page = client.get("/signin/trouble?tab=password")
        return client.post(
            "/signin/trouble/password",
            data={
                "csrf_token": csrf_token(page.get_data(as_text=True)),
                "username": "dana.rivera",
                "email": "dana@example.org",
            },
        )


def register(client: FlaskClient, *rows: tuple[str, str]) -> TestResponse:
    """Post the registration form with these (Access ID, Access Password) student rows."""
    form: dict[str, Any] = {
        "first_name": "Dana",
        "last_name": "Rivera",
        "email": "dana@example.org",
        "username": "dana.rivera",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
    }
    for index, (access_id, access_password) in enumerate(rows):
        form |= {
            f"students-{index}-name": "Zoe",
            f"students-{index}-access_id": access_id,
            f"students-{index}-access_password": access_password,
            f"students-{index}-relationship": "Mother",
        }
    with client.application.app_context():
        page = client.get("/register")
        return client.post("/register", data={"csrf_token": csrf_token(page.get_data(as_text=True)), **form})


# --- the lockout: sign-in page ------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "wait"),
    [
        ({"lockout_threshold": 1, "lockout_seconds": 60}, "1 minute"),
        ({"lockout_threshold": 1, "lockout_seconds": 90}, "2 minutes"),
        ({"lockout_threshold": 1, "lockout_seconds": 300}, "5 minutes"),
    ],
    indirect=["settings"],
)
def test_the_lock_message_says_the_minutes_left_rounded_up_in_the_right_plural(
    client: FlaskClient, wait: str
) -> None:
    sign_in(client, "not-the-password")

    page = sign_in(client, "not-the-password")

    assert LOCKED.format(wait) in page
    assert not WRONG.search(page)


# --- the trouble page: the life of a reset link -------------------------------------------
@pytest.mark.parametrize(
    ("settings", "life"),
    [
        ({"recovery_token_seconds": 59}, "1 minute"),
        ({"recovery_token_seconds": 60}, "1 minute"),
        ({"recovery_token_seconds": 90}, "2 minutes"),
        ({"recovery_token_seconds": 1800}, "30 minutes"),
    ],
    indirect=["settings"],
)
def test_the_trouble_page_gives_the_link_life_in_minutes_rounded_up(client: FlaskClient, life: str) -> None:
    response = ask_for_reset(client)

    assert response.status_code == 200
    assert LINK_LIFE.format(life) in text(response)
    assert not WRONG.search(text(response))


# --- registration: a paused Access ID and a limited network ------------------------------
@pytest.mark.parametrize(
    ("settings", "wait"),
    [
        ({"access_id_failures": 1, "access_id_pause_seconds": 30}, "1 minute"),
        ({"access_id_failures": 1, "access_id_pause_seconds": 900}, "15 minutes"),
    ],
    indirect=["settings"],
)
def test_a_paused_access_id_says_the_minutes_left_in_the_right_plural(
    client: FlaskClient, zoe: Student, wait: str
) -> None:
    assert "not correct" in text(register(client, ("ZR-1", "wrong")))

    response = register(client, ("ZR-1", "orchid-42"))

    assert PAUSED.format(wait) in text(response)
    assert not WRONG.search(text(response))


@pytest.mark.parametrize(
    ("settings", "wait"),
    [({"rate_limit_register": "1/minute"}, "1 minute"), ({"rate_limit_register": "1/hour"}, "60 minutes")],
    indirect=["settings"],
)
def test_a_limited_network_says_the_minutes_left_in_the_right_plural(
    client: FlaskClient, zoe: Student, wait: str
) -> None:
    # One post, two Access ID checks: the first takes the address's one check, the second is refused.
    response = register(client, ("ZR-1", "orchid-42"), ("ZR-2", "comet-17"))

    assert response.status_code == 429
    assert RATE_LIMITED.format(wait) in text(response)
    assert not WRONG.search(text(response))
