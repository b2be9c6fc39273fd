"""One guessing budget per account: the account page's current-password check counts against the
username whatever cookies the browser holds, and an empty password is a wrong one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.accounts.models import Account
from idp.config import Settings
from tests.conftest import PASSWORD, settings_for_tests
from tests.functional.test_account_preferences import change_password
from tests.functional.test_signin_lockout import INVALID, LOCKED, audit_events, page_text, sign_in

THRESHOLD = 3


@pytest.fixture
def settings(database_url: str, keys_dir: Path) -> Settings:
    return settings_for_tests(database_url, keys_dir, lockout_threshold=THRESHOLD, lockout_seconds=300)


@pytest.fixture
def dana(make_account: Callable[..., Account]) -> Account:
    return make_account(username="Dana.Rivera")


NEW = "a fresh and long passphrase"


def test_a_signed_in_browser_gets_the_threshold_of_wrong_current_passwords_and_no_more(
    app: Flask, dana: Account
) -> None:
    browser = app.test_client()
    assert sign_in(browser, "dana.rivera", PASSWORD).status_code == 303
    assert browser.get_cookie("idp_device") is not None  # it holds a device cookie for the account

    answers = [change_password(browser, "not it", NEW).status_code for _ in range(THRESHOLD + 1)]

    assert answers == [400] * THRESHOLD + [429]
    locked = change_password(browser, PASSWORD, NEW)
    assert locked.status_code == 429 and LOCKED.search(page_text(locked))
    assert len(audit_events("account.locked")) == 1
    assert audit_events("device.locked") == []


def test_the_device_cookie_still_signs_its_parent_in_while_the_check_is_locked(
    app: Flask, dana: Account
) -> None:
    parent, stranger = app.test_client(), app.test_client()
    assert sign_in(parent, "dana.rivera", PASSWORD).status_code == 303
    assert sign_in(stranger, "dana.rivera", PASSWORD).status_code == 303
    for _ in range(THRESHOLD):
        change_password(stranger, "not it", NEW)

    assert LOCKED.search(page_text(sign_in(app.test_client(), "dana.rivera", PASSWORD)))
    assert sign_in(parent, "dana.rivera", PASSWORD).status_code == 303


def test_an_empty_password_is_a_failed_attempt_with_the_same_answer(app: Flask, dana: Account) -> None:
    client: FlaskClient = app.test_client()
    wrong = page_text(sign_in(client, "dana.rivera", "not it"))

    empty = [page_text(sign_in(client, "dana.rivera", "")) for _ in range(THRESHOLD - 1)]

    assert all(INVALID in answer for answer in [wrong, *empty])
    assert LOCKED.search(page_text(sign_in(client, "dana.rivera", PASSWORD)))
    assert len(audit_events("signin.failed")) == THRESHOLD
