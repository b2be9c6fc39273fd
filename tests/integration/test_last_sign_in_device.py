"""The device of each sign-in: recorded beside its time and address, moved to "last" by the next
sign-in, and released as the ``last_login_device`` claim (browser and system, never an address)."""

from __future__ import annotations

from datetime import timedelta

from idp.accounts.models import Account
from idp.accounts.service import SignInContext
from idp.extensions import db
from idp.web.context import services
from tests.conftest import PASSWORD

FIREFOX_ON_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_ON_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1"
)


def sign_in(account: Account, user_agent: str | None, ip_address: str) -> Account:
    context = SignInContext(ip_address=ip_address, user_agent=user_agent)
    signed_in = services().signin().sign_in(account.username, PASSWORD, context, browser_session=None)
    db.session.expire_all()
    return signed_in.account


def test_the_next_sign_in_makes_this_ones_device_the_last(make_account, clock):
    account = make_account(username="dana.rivera")
    first_at = clock.now()

    account = sign_in(account, FIREFOX_ON_WINDOWS, "203.0.113.7")
    assert (account.current_login_device, account.last_login_device) == ("Firefox (Windows)", None)
    assert "last_login_device" not in services().claims().for_scope(account, "openid profile")

    clock.advance(timedelta(hours=3))
    account = sign_in(account, SAFARI_ON_IPHONE, "198.51.100.2")

    assert (account.last_login_at, account.last_login_device) == (first_at, "Firefox (Windows)")
    assert account.current_login_device == "Safari (iOS)"
    claims = services().claims().for_scope(account, "openid profile")
    assert claims["last_login_device"] == "Firefox (Windows)"
    assert claims["last_login_at"] == int(first_at.timestamp())
    assert "203.0.113.7" not in str(claims)
    # Only with the profile scope, as last_login_at.
    assert "last_login_device" not in services().claims().for_scope(account, "openid email students")


def test_a_sign_in_from_an_unnamed_device_leaves_no_device_behind(make_account, clock):
    account = sign_in(make_account(username="ana"), FIREFOX_ON_WINDOWS, "203.0.113.7")
    account = sign_in(account, "curl/8.5.0", "203.0.113.7")
    account = sign_in(account, None, "203.0.113.7")

    assert (account.last_login_device, account.current_login_device) == (None, None)
    assert "last_login_device" not in services().claims().for_scope(account, "openid profile")
