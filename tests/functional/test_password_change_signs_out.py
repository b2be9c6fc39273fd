"""A password change on Account Preferences revokes like a reset: "Sign out of my other devices",
checked by default, ends the other sessions and the refresh tokens of every other grant."""

from __future__ import annotations

import email
import html
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.accounts.models import Account, OPSession
from idp.config import Settings
from idp.extensions import db
from idp.oauth.models import RefreshTokenFamily
from tests.conftest import PASSWORD, AuthRequest, csrf_token, redirect_params, settings_for_tests
from tests.functional.oidc import authorize_as, redeem, sign_in
from tests.functional.tokens import OFFLINE_SCOPE, count, refresh
from tests.receiver import Receiver

NEW_PASSWORD = "lantern-orchard-velvet-93"


@pytest.fixture
def settings(database_url: str, keys_dir: Path, outbox: Path) -> Settings:
    return settings_for_tests(database_url, keys_dir, smtp_url=f"file://{outbox}")


@pytest.fixture
def portal(make_client, receiver: Receiver):
    return make_client(scope=OFFLINE_SCOPE, backchannel_logout_uri=receiver.url)


@pytest.fixture
def dana(make_account: Callable[..., Account]) -> Account:
    return make_account(username="dana.rivera", email="dana@example.org")


def browser(app: Flask, portal: Any) -> tuple[FlaskClient, dict[str, Any]]:
    """A browser signed in to the portal with offline access, and its tokens."""
    client = app.test_client()
    with app.app_context():  # a ``g`` of its own: each browser has its own CSRF token
        auth = AuthRequest(portal.client_id, scope=OFFLINE_SCOPE)
        code = authorize_as(client, auth, "dana.rivera")["code"]
        tokens = redeem(client, auth, code, portal.client_secret).get_json()
    return client, tokens


def change_password(client: FlaskClient, **extra: str) -> Any:
    with client.application.app_context():
        token = csrf_token(client.get("/account?edit=password").get_data(as_text=True))
        return client.post(
            "/account/password",
            data={
                "csrf_token": token,
                "current_password": PASSWORD,
                "new_password": NEW_PASSWORD,
                "confirm_password": NEW_PASSWORD,
                **extra,
            },
        )


def prompt_none(client: FlaskClient, portal: Any) -> dict[str, str]:
    with client.application.app_context():
        response = client.get(AuthRequest(portal.client_id, extra={"prompt": "none"}).url())
    return redirect_params(response.headers["Location"])


def notice(outbox: Path) -> Message:
    (path,) = outbox.glob("*.eml")
    return email.message_from_bytes(path.read_bytes())


def plain_text(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return str(part.get_payload(decode=True).decode())  # type: ignore[union-attr]
    raise AssertionError("no text part")


def test_the_box_is_offered_and_checked_by_default(app, dana):
    client = app.test_client()
    with app.app_context():
        assert sign_in(client, "dana.rivera").status_code == 303
        page = html.unescape(client.get("/account?edit=password").get_data(as_text=True))

    assert '<input type="checkbox" name="sign_out_others" value="y" checked>' in page
    assert "Sign out of my other devices" in page


def test_signing_out_the_others_ends_their_sessions_and_grants_but_not_this_ones(
    app, portal, dana, receiver, outbox
):
    mine, my_tokens = browser(app, portal)
    other, other_tokens = browser(app, portal)

    response = change_password(mine, sign_out_others="y")

    assert response.status_code == 303
    assert count(OPSession) == 1
    # The other browser: no session, no silent sign-in, no refresh; its portal was told.
    assert other.get("/account").status_code == 303
    assert prompt_none(other, portal)["error"] == "login_required"
    refused = refresh(other, portal.client_id, portal.client_secret, other_tokens["refresh_token"])
    assert (refused.status_code, refused.get_json()["error"]) == (400, "invalid_grant")
    assert len(receiver.wait_for(1)) == 1
    # This browser keeps its session and its grant.
    assert mine.get("/account").status_code == 200
    assert "code" in prompt_none(mine, portal)
    assert (
        refresh(mine, portal.client_id, portal.client_secret, my_tokens["refresh_token"]).status_code == 200
    )
    revoked = count(RefreshTokenFamily, RefreshTokenFamily.revoked_reason == "password_changed")
    assert revoked == 1
    assert "Every other device signed in to this account was signed out." in plain_text(notice(outbox))


def test_leaving_the_box_unchecked_keeps_the_others_signed_in(app, portal, dana, receiver, outbox):
    mine, _ = browser(app, portal)
    other, other_tokens = browser(app, portal)

    assert change_password(mine).status_code == 303  # a browser sends nothing for an unchecked box

    assert count(OPSession) == 2
    assert other.get("/account").status_code == 200
    assert (
        refresh(other, portal.client_id, portal.client_secret, other_tokens["refresh_token"]).status_code
        == 200
    )
    assert receiver.received == []
    assert "Other devices signed in to this account stay signed in." in plain_text(notice(outbox))
    db.session.rollback()
