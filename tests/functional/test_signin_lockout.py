"""Lockout, device cookies, rate limits and bounded hashing through HTTP, on the real Redis."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import select
from werkzeug.test import TestResponse

from idp.accounts.lockout import LockedOut
from idp.accounts.models import Account
from idp.accounts.service import InvalidCredentials, SignInContext
from idp.audit import AuditEvent
from idp.clock import FrozenClock
from idp.config import Settings
from idp.extensions import db
from idp.web.context import services
from tests.conftest import PASSWORD, csrf_token, settings_for_tests
from tests.functional import oidc
from tests.redis_server import free_port

INVALID = "Invalid username or password."
LOCKED = re.compile(
    r"This account is locked because of too many failed sign-in attempts\. Try again in (\d+) minutes?\."
)
F = TypeVar("F", bound=Callable[..., Any])


def with_settings(**overrides: Any) -> Callable[[F], F]:
    """Give the decorated test's app these Settings fields."""

    def mark(test: F) -> F:
        test.settings_overrides = overrides  # type: ignore[attr-defined]
        return test

    return mark


@pytest.fixture
def settings(database_url: str, keys_dir: Path, request: pytest.FixtureRequest) -> Settings:
    """Three failures lock for five minutes, unless the test says otherwise (``with_settings``)."""
    overrides = {"lockout_threshold": 3, "lockout_seconds": 300}
    overrides.update(getattr(request.function, "settings_overrides", {}))
    return settings_for_tests(database_url, keys_dir, **overrides)


@pytest.fixture
def dana(make_account: Callable[..., Account]) -> Account:
    return make_account(username="Dana.Rivera")


def sign_in(client: FlaskClient, username: str, password: str) -> TestResponse:
    """Sign in through the page, in an app context of its own (``g`` holds the CSRF token)."""
    with client.application.app_context():
        return oidc.sign_in(client, username, password)


def page_text(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined, no-any-return]


def fail(client: FlaskClient, username: str = "dana.rivera") -> str:
    response = sign_in(client, username, "not-the-password")
    assert response.status_code == 200
    return page_text(response)


def audit_events(name: str) -> list[AuditEvent]:
    db.session.expire_all()
    events = list(db.session.execute(select(AuditEvent).where(AuditEvent.name == name)).scalars())
    db.session.commit()  # end the read: SQLite's BEGIN IMMEDIATE would hold off the next request
    return events


def test_third_failure_locks_the_username_and_the_page_says_for_how_long(
    client: FlaskClient, dana: Account
) -> None:
    for _ in range(3):
        html = fail(client)
        assert INVALID in html
        assert "locked" not in html.lower()
    response = sign_in(client, "dana.rivera", PASSWORD)
    assert response.status_code == 200
    match = LOCKED.search(page_text(response))
    assert match and match.group(1) == "5"
    assert INVALID not in page_text(response)
    assert len(audit_events("signin.failed")) == 3
    (locked,) = audit_events("account.locked")
    assert locked.account_id == dana.id
    assert [e.details["reason"] for e in audit_events("signin.refused")] == ["locked"]


def test_locked_username_costs_no_argon2_verify(client: FlaskClient, dana: Account) -> None:
    for _ in range(3):
        fail(client)
    before = REGISTRY.get_sample_value("idp_argon2_verifications_total")
    for password in ("wrong", PASSWORD, "also wrong"):
        assert LOCKED.search(page_text(sign_in(client, "dana.rivera", password)))
    assert REGISTRY.get_sample_value("idp_argon2_verifications_total") == before


def test_case_width_and_spaces_do_not_dodge_the_counter(client: FlaskClient, dana: Account) -> None:
    for variant in ("DANA.RIVERA", "  dana.rivera ", "Ｄana.Rivera"):
        fail(client, variant)
    assert LOCKED.search(page_text(sign_in(client, "Dana.Rivera", PASSWORD)))


def test_unknown_username_locks_with_the_same_message(client: FlaskClient, dana: Account) -> None:
    for _ in range(3):
        assert INVALID in fail(client, "nobody.here")
    match = LOCKED.search(fail(client, "nobody.here"))
    assert match and match.group(1) == "5"


def test_success_resets_the_count(client: FlaskClient, dana: Account) -> None:
    fail(client)
    fail(client)
    assert sign_in(client, "dana.rivera", PASSWORD).status_code == 303
    fail(client)
    fail(client)
    assert sign_in(client, "dana.rivera", PASSWORD).status_code == 303


@with_settings(lockout_seconds=1)
def test_right_password_is_accepted_once_the_lock_expires(
    client: FlaskClient, dana: Account, clock: FrozenClock
) -> None:
    for _ in range(3):
        fail(client)
    match = LOCKED.search(page_text(sign_in(client, "dana.rivera", PASSWORD)))
    assert match and match.group(1) == "1"  # one second left, rounded up to a minute
    time.sleep(1.1)  # the lock's TTL runs on Redis's clock
    clock.advance(timedelta(seconds=1.1))  # and its copy in the database on the app's
    assert sign_in(client, "dana.rivera", PASSWORD).status_code == 303


def test_browser_with_the_device_cookie_signs_in_while_the_username_is_locked(
    app: Flask, dana: Account
) -> None:
    parent, stranger = app.test_client(), app.test_client()
    assert sign_in(parent, "dana.rivera", PASSWORD).status_code == 303
    assert parent.get_cookie("idp_device") is not None
    for _ in range(3):
        fail(stranger)
    assert LOCKED.search(page_text(sign_in(stranger, "dana.rivera", PASSWORD)))
    assert sign_in(parent, "dana.rivera", PASSWORD).status_code == 303


def test_device_failures_count_against_the_device_not_the_username(app: Flask, dana: Account) -> None:
    parent, other = app.test_client(), app.test_client()
    assert sign_in(parent, "dana.rivera", PASSWORD).status_code == 303
    for _ in range(3):
        fail(parent)
    (device_locked,) = audit_events("device.locked")
    assert device_locked.account_id == dana.id
    assert audit_events("account.locked") == []
    assert sign_in(other, "dana.rivera", PASSWORD).status_code == 303
    # The locked device is trusted no more: its next failures count against the username.
    for _ in range(3):
        fail(parent)
    assert len(audit_events("account.locked")) == 1
    assert LOCKED.search(page_text(sign_in(app.test_client(), "dana.rivera", PASSWORD)))
    assert sign_in(other, "dana.rivera", PASSWORD).status_code == 303  # other's own device cookie


def test_device_cookie_of_another_account_does_not_help(
    app: Flask, dana: Account, make_account: Callable[..., Account]
) -> None:
    make_account(username="sam.rivera")
    browser = app.test_client()
    assert sign_in(browser, "sam.rivera", PASSWORD).status_code == 303
    for _ in range(3):
        fail(app.test_client())
    assert LOCKED.search(page_text(sign_in(browser, "dana.rivera", PASSWORD)))


def test_forged_device_cookie_is_ignored(app: Flask, client: FlaskClient, dana: Account) -> None:
    for _ in range(3):
        fail(client)
    forged = app.test_client()
    forged.set_cookie("idp_device", "W1siYWNjIiwiZGV2IiwxXV0.forged")
    assert LOCKED.search(page_text(sign_in(forged, "dana.rivera", PASSWORD)))


def test_unlock_command_lifts_the_lock(app: Flask, client: FlaskClient, dana: Account) -> None:
    for _ in range(3):
        fail(client)
    result = app.test_cli_runner().invoke(args=["accounts", "unlock", " DANA.Rivera"])
    assert result.exit_code == 0, result.output
    assert "unlocked" in result.output
    assert sign_in(client, "dana.rivera", PASSWORD).status_code == 303
    (unlocked,) = audit_events("account.unlocked")
    assert unlocked.account_id == dana.id
    again = app.test_cli_runner().invoke(args=["accounts", "unlock", "dana.rivera"])
    assert again.exit_code == 0 and "was not locked" in again.output


def test_current_password_check_counts_toward_the_lockout(
    app: Flask, client: FlaskClient, dana: Account
) -> None:
    # The change-password page's check: the same counter as sign-in.
    accounts = services().accounts()
    context = SignInContext(ip_address="203.0.113.9")
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            accounts.verify_password(dana, "not-the-password", context)
    with pytest.raises(LockedOut):
        accounts.verify_password(dana, PASSWORD, context)
    db.session.commit()
    assert LOCKED.search(page_text(sign_in(client, "dana.rivera", PASSWORD)))
    assert len(audit_events("password_check.failed")) == 3


# --- rate limits --------------------------------------------------------------------------
@with_settings(rate_limit_signin="3/minute")
def test_signin_posts_beyond_the_limit_get_429_with_retry_after(client: FlaskClient, dana: Account) -> None:
    page = client.get("/signin")
    token = csrf_token(page_text(page))
    form = {"csrf_token": token, "username": "dana.rivera", "password": "wrong", "request_id": ""}
    assert [client.post("/signin", data=form).status_code for _ in range(3)] == [200, 200, 200]
    limited = client.post("/signin", data=form)
    assert limited.status_code == 429
    assert limited.mimetype == "text/html"
    assert "Too many requests" in page_text(limited)
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert client.get("/signin").status_code == 200  # the page itself is not limited
    assert (REGISTRY.get_sample_value("idp_rate_limited_total", {"limit": "accounts.signin"}) or 0) >= 1


@with_settings(rate_limit_token="2/minute")
def test_token_requests_beyond_the_limit_get_a_json_429(client: FlaskClient) -> None:
    form = {"grant_type": "authorization_code", "code": "nope", "redirect_uri": "https://x.test/cb"}
    assert [client.post("/token", data=form).status_code for _ in range(2)] == [401, 401]
    limited = client.post("/token", data=form)
    assert limited.status_code == 429
    assert limited.json is not None and limited.json["error"] == "invalid_request"
    assert int(limited.headers["Retry-After"]) >= 1


# --- bounded hashing ----------------------------------------------------------------------
@pytest.fixture
def slots_taken(app: Flask) -> Iterator[None]:
    """Another thread holds every argon2 slot of this app's hasher until the test ends."""
    hasher = services().hasher
    slots = hasher.slots  # type: ignore[attr-defined]
    holding, release = threading.Event(), threading.Event()

    def hold(remaining: int) -> None:
        if remaining == 0:
            holding.set()
            release.wait(10)
            return
        with slots.hold():
            hold(remaining - 1)

    holders = [threading.Thread(target=hold, args=(1,)) for _ in range(slots.limit)]
    for holder in holders:
        holder.start()
    for _ in holders:
        assert holding.wait(5)
    yield
    release.set()
    for holder in holders:
        holder.join()


@with_settings(argon2_max_concurrent=1)
def test_signin_gets_a_quick_503_when_every_argon2_slot_is_taken(
    client: FlaskClient, dana: Account, slots_taken: None
) -> None:
    started = time.monotonic()
    response = sign_in(client, "dana.rivera", PASSWORD)
    assert response.status_code == 503
    assert time.monotonic() - started < 2
    assert response.headers["Retry-After"] == "1"
    assert "busy" in page_text(response)
    assert services().lockout.failures("dana.rivera") == 0


# --- operations ---------------------------------------------------------------------------
def test_metrics_and_readiness_report_the_shared_counters(client: FlaskClient) -> None:
    text = page_text(client.get("/metrics"))
    assert "idp_redis_fallback_active 0.0" in text
    assert "# TYPE idp_argon2_verifications_total counter" in text
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"status": "ok", "database": "ok", "keys": "ok", "redis": "ok"}


@with_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
def test_signin_works_and_still_locks_when_redis_is_unreachable(client: FlaskClient, dana: Account) -> None:
    assert sign_in(client, "dana.rivera", PASSWORD).status_code == 303
    for _ in range(3):
        fail(client, "sam.nobody")
    assert LOCKED.search(fail(client, "sam.nobody"))
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"status": "degraded", "database": "ok", "keys": "ok", "redis": "degraded"}
    assert "idp_redis_fallback_active 1.0" in page_text(client.get("/metrics"))
