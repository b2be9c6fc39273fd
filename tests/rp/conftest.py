"""The portal's tests: a signing key set of our own, an ID-token builder, a portal app per test.

Tokens are signed here with keys generated for the test session, and verified against the
public half as a JWKS, exactly as the portal verifies the provider's. The portal's pages run
on its real (SQLite) database; a signed-in session is stored with ``sign_in_as``, the way the
callback stores one once the ID token has passed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from idp.clock import FrozenClock
from relying_party_demo import create_app
from relying_party_demo.config import PortalSettings
from relying_party_demo.sessions import Identity
from relying_party_demo.web_session import ServerSession

ISSUER = "http://127.0.0.1:5999"
CLIENT_ID = "demo-portal"
BASE_URL = "http://127.0.0.1:5998"
SECRET_KEY = "rp-test-secret-key-that-is-long-enough-0123456789"


@pytest.fixture(scope="session")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig", "alg": "RS256"}, private=True)


@pytest.fixture(scope="session")
def ec_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "ec-1", "use": "sig", "alg": "ES256"}, private=True)


@pytest.fixture(scope="session")
def jwks(rsa_key: RSAKey, ec_key: ECKey) -> KeySet:
    """The provider's published keys: public halves only, imported from their JSON form."""
    published = {"keys": [rsa_key.as_dict(private=False), ec_key.as_dict(private=False)]}
    return KeySet.import_key_set(published)


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


TokenFactory = Callable[..., str]


@pytest.fixture
def make_token(rsa_key: RSAKey, now: datetime) -> TokenFactory:
    """Sign claims (an ID token unless told otherwise); ``drop`` removes claims, ``header`` adds.

    Tokens carry ``typ: JWT`` as joserfc writes by default, unless ``untyped``.
    """

    def make(
        *,
        key: Any = None,
        header: dict[str, Any] | None = None,
        drop: tuple[str, ...] = (),
        untyped: bool = False,
        **claims: Any,
    ) -> str:
        values: dict[str, Any] = {
            "iss": ISSUER,
            "sub": "account-1",
            "aud": CLIENT_ID,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(minutes=10)).timestamp()),
            "nonce": "nonce-1",
            "sid": "sid-1",
        }
        values.update(claims)
        for name in drop:
            values.pop(name, None)
        signing_key = key or rsa_key
        protected = {"alg": "RS256" if signing_key.key_type == "RSA" else "ES256", "kid": signing_key.kid}
        protected.update(header or {})
        return jwt.encode(
            protected,
            values,
            signing_key,
            algorithms=[protected["alg"]],
            default_type=None if untyped else "JWT",
        )

    return make


# --- the portal app -----------------------------------------------------------------------
@pytest.fixture
def portal_settings(tmp_path: Path) -> PortalSettings:
    return PortalSettings(
        client_id=CLIENT_ID,
        client_secret=secrets.token_urlsafe(24),
        issuer=ISSUER,
        base_url=BASE_URL,
        secret_key=SECRET_KEY,
        idle_seconds=900,
        database_url=f"sqlite:///{tmp_path / 'portal.db'}",
    )


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def portal_app(portal_settings: PortalSettings, clock: FrozenClock) -> Iterator[Flask]:
    app = create_app(portal_settings, clock=clock)
    app.config["TESTING"] = True
    yield app
    app.extensions["relying_party_demo"].engine.dispose()


@pytest.fixture
def portal(portal_app: Flask) -> FlaskClient:
    return portal_app.test_client()


def dana_claims(**extra: Any) -> dict[str, Any]:
    """ID-token claims of a parent with two students, listed out of tab order."""
    claims: dict[str, Any] = {
        "sub": "account-1",
        "sid": "sid-1",
        "given_name": "Dana",
        "family_name": "Rivera",
        "students": [
            {
                "id": "100234",
                "given_name": "Zoe",
                "family_name": "Rivera",
                "school_id": "WMS",
                "relationship": "Mother",
            },
            {
                "id": "900001",
                "given_name": "Ben",
                "family_name": "Rivera",
                "school_id": "NHS",
                "relationship": "Mother",
            },
            {
                "id": "100235",
                "given_name": "Adam",
                "family_name": "Rivera",
                "school_id": "LES",
                "relationship": "Mother",
            },
        ],
        "primary_student_id": "100234",
    }
    claims.update(extra)
    return claims


SignIn = Callable[..., Identity]


@pytest.fixture
def sign_in_as(portal: FlaskClient) -> SignIn:
    """Store a signed-in session for the test client's browser, as the callback does."""

    def sign_in(claims: dict[str, Any] | None = None) -> Identity:
        values = claims if claims is not None else dana_claims()
        identity = Identity(
            sub=values["sub"], sid=values.get("sid"), id_token="header.payload.signature", claims=values
        )
        with portal.session_transaction() as session:
            assert isinstance(session, ServerSession)
            session.sign_in(identity)
        return identity

    return sign_in
