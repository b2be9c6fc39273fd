"""The back-channel receiver accepts only logout tokens per OIDC Back-Channel Logout 1.0 2.6."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from joserfc.jwk import KeySet, RSAKey

from relying_party_demo.tokens import (
    BACKCHANNEL_EVENT,
    LEEWAY,
    LOGOUT_TOKEN_MAX_AGE,
    LogoutRequestClaims,
    LogoutTokenRefused,
    verify_logout_token,
)
from tests.rp.conftest import CLIENT_ID, ISSUER, TokenFactory

EVENTS = {BACKCHANNEL_EVENT: {}}


@pytest.fixture
def make_logout_token(make_token: TokenFactory) -> TokenFactory:
    """A logout token as the provider makes one: typed, events, sid and sub, no nonce."""

    def make(**claims: Any) -> str:
        values: dict[str, Any] = {"events": EVENTS, "jti": "jti-1", "drop": ("nonce",)}
        values.setdefault("header", {"typ": "logout+jwt"})
        values.update(claims)
        return make_token(**values)

    return make


def asks(now: datetime, *, sid: str | None = "sid-1", sub: str | None = "account-1") -> LogoutRequestClaims:
    """What the default token asks for: its iat is `now`, so it is usable for the maximum age."""
    return LogoutRequestClaims(sid=sid, sub=sub, jti="jti-1", usable_until=now + LOGOUT_TOKEN_MAX_AGE)


def verify(token: str, jwks: KeySet, now: datetime) -> LogoutRequestClaims:
    return verify_logout_token(token, jwks, issuer=ISSUER, client_id=CLIENT_ID, now=now)


def refusal(token: str, jwks: KeySet, now: datetime) -> str:
    with pytest.raises(LogoutTokenRefused) as refused:
        verify(token, jwks, now)
    return refused.value.reason


def test_a_logout_token_names_the_session_and_the_user(
    make_logout_token: TokenFactory, jwks: KeySet, now: datetime
) -> None:
    assert verify(make_logout_token(), jwks, now) == asks(now)


def test_sid_alone_or_sub_alone_is_enough(
    make_logout_token: TokenFactory, jwks: KeySet, now: datetime
) -> None:
    only_sid = make_logout_token(drop=("nonce", "sub"))
    only_sub = make_logout_token(drop=("nonce", "sid"))
    assert verify(only_sid, jwks, now) == asks(now, sub=None)
    assert verify(only_sub, jwks, now) == asks(now, sid=None)


def test_neither_sid_nor_sub_is_refused(make_logout_token: TokenFactory, jwks: KeySet, now: datetime) -> None:
    assert refusal(make_logout_token(drop=("nonce", "sid", "sub")), jwks, now) == "sid"


def test_a_logout_token_without_the_event_is_refused(
    make_logout_token: TokenFactory, jwks: KeySet, now: datetime
) -> None:
    assert refusal(make_logout_token(drop=("nonce", "events")), jwks, now) == "events"
    other_event = make_logout_token(events={"http://schemas.openid.net/event/other": {}})
    assert refusal(other_event, jwks, now) == "events"
    not_an_object = make_logout_token(events={BACKCHANNEL_EVENT: "yes"})
    assert refusal(not_an_object, jwks, now) == "events"


def test_a_logout_token_without_a_jti_is_refused(
    make_logout_token: TokenFactory, jwks: KeySet, now: datetime
) -> None:
    # 2.4 requires it, and the receiver needs it to refuse a replay.
    assert refusal(make_logout_token(drop=("nonce", "jti")), jwks, now) == "jti"
    assert refusal(make_logout_token(jti=""), jwks, now) == "jti"
    assert refusal(make_logout_token(jti=42), jwks, now) == "jti"


def test_a_logout_token_is_usable_until_it_is_too_old_or_expired(
    make_logout_token: TokenFactory, jwks: KeySet, now: datetime
) -> None:
    """The receiver keeps a jti as long as the token would pass; then verification refuses it."""
    short = make_logout_token(exp=int((now + timedelta(minutes=2)).timestamp()))
    usable_until = verify(short, jwks, now).usable_until
    assert usable_until == now + timedelta(minutes=2) + LEEWAY
    assert verify(short, jwks, usable_until - timedelta(seconds=1)).jti == "jti-1"
    assert refusal(short, jwks, usable_until) == "exp"

    lasting = make_logout_token(drop=("nonce", "exp"))
    usable_until = verify(lasting, jwks, now).usable_until
    assert usable_until == now + LOGOUT_TOKEN_MAX_AGE
    assert verify(lasting, jwks, usable_until).jti == "jti-1"
    assert refusal(lasting, jwks, usable_until + timedelta(seconds=1)) == "iat"


def test_a_nonce_is_refused(make_logout_token: TokenFactory, jwks: KeySet, now: datetime) -> None:
    assert refusal(make_logout_token(drop=(), nonce="n"), jwks, now) == "nonce"


def test_an_id_token_is_not_a_logout_token(make_token: TokenFactory, jwks: KeySet, now: datetime) -> None:
    assert refusal(make_token(), jwks, now) == "typ"  # typed as a plain JWT
    assert refusal(make_token(untyped=True), jwks, now) == "events"
    assert refusal(make_token(untyped=True, events=EVENTS), jwks, now) == "nonce"


def test_an_untyped_logout_token_of_an_older_provider_passes(
    make_logout_token: TokenFactory, jwks: KeySet, now: datetime
) -> None:
    token = make_logout_token(header={}, untyped=True)
    assert verify(token, jwks, now) == asks(now)


def test_wrong_audience_or_issuer_is_refused(
    make_logout_token: TokenFactory, jwks: KeySet, now: datetime
) -> None:
    assert refusal(make_logout_token(aud="another-portal"), jwks, now) == "aud"
    assert refusal(make_logout_token(iss="https://evil.example"), jwks, now) == "iss"


def test_a_signature_by_another_key_is_refused(
    make_logout_token: TokenFactory, jwks: KeySet, now: datetime
) -> None:
    impostor = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}, private=True)
    assert refusal(make_logout_token(key=impostor), jwks, now) == "signature"


def test_old_or_expired_logout_tokens_are_refused(
    make_logout_token: TokenFactory, jwks: KeySet, now: datetime
) -> None:
    old = int((now - timedelta(hours=1)).timestamp())
    assert refusal(make_logout_token(drop=("nonce", "exp"), iat=old), jwks, now) == "iat"
    assert refusal(make_logout_token(exp=old + 60, iat=old), jwks, now) == "exp"
    assert refusal(make_logout_token(drop=("nonce", "iat")), jwks, now) == "iat"
