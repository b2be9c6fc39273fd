"""The provider, seen from the portal: Authlib's Flask client with discovery, PKCE, state and nonce.

Authlib finds the endpoints (``server_metadata_url``), makes the authorization URL with
``state``, ``nonce`` and an S256 code challenge, keeps them in the (server-side) session,
and redeems the code with ``client_secret_basic``. ID tokens and logout tokens are verified
by ``relying_party_demo.tokens`` with an explicit algorithm list; this module only adds the
key set, refetched once when a token names a key we have not seen (a rotation).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from authlib.integrations.flask_client import FlaskOAuth2App, OAuth
from flask import Flask, current_app
from joserfc.jwk import KeySet

from relying_party_demo.clock import Clock
from relying_party_demo.config import PortalSettings
from relying_party_demo.tokens import (
    IdTokenRefused,
    LogoutRequestClaims,
    LogoutTokenRefused,
    TokenRefused,
    UnknownSigningKey,
    verify_id_token,
    verify_logout_token,
)

CLIENT_NAME = "district"
# offline_access: a refresh token, so the portal can read fresh claims (relying_party_demo.freshness);
# a client registered without it simply gets none.
SCOPE = "openid profile email students offline_access"
EXTENSION_KEY = "relying_party_demo.oauth"
# The provider's default JWKS Cache-Control max-age (IDP_JWKS_MAX_AGE).
JWKS_MAX_AGE_SECONDS = 300

T = TypeVar("T")


class ProviderUnavailable(RuntimeError):
    """The provider's discovery document or keys could not be fetched, or do not fit."""


class DistrictClient(FlaskOAuth2App):  # type: ignore[misc]
    """Authlib's client with the portal's own ID-token verification."""

    OAUTH_APP_CONFIG = None  # Authlib asks custom client classes for defaults; we have none

    settings: PortalSettings
    clock: Clock
    _jwks_fetched_at: float = float("-inf")

    def load_server_metadata(self) -> dict[str, Any]:
        try:
            metadata: dict[str, Any] = super().load_server_metadata()
        except (requests.RequestException, ValueError) as error:
            raise ProviderUnavailable(f"discovery failed: {error}") from None
        # OIDC Discovery 1.0 4.3: the document must name exactly the issuer we were given.
        if metadata.get("issuer") != self.settings.issuer:
            self.server_metadata.pop("_loaded_at", None)
            raise ProviderUnavailable(
                f"the discovery document names issuer {metadata.get('issuer')!r}, "
                f"not RP_ISSUER={self.settings.issuer!r}"
            )
        return metadata

    def key_set(self, *, force: bool = False) -> KeySet:
        # A key the provider revokes leaves its JWKS: keep a copy no longer than it may be cached.
        stale = time.monotonic() - self._jwks_fetched_at > JWKS_MAX_AGE_SECONDS
        try:
            keys = KeySet.import_key_set(self.fetch_jwk_set(force=force or stale))
        except (requests.RequestException, ValueError, TypeError) as error:
            raise ProviderUnavailable(f"the provider's keys could not be read: {error}") from None
        if force or stale:
            self._jwks_fetched_at = time.monotonic()
        return keys

    def with_keys(self, verify: Callable[[KeySet], T], refused: type[TokenRefused]) -> T:
        """Verify with the cached key set; fetch it once more if the token names a new key."""
        try:
            return verify(self.key_set())
        except UnknownSigningKey:
            pass
        try:
            return verify(self.key_set(force=True))
        except UnknownSigningKey as unknown:
            raise refused(unknown.reason, str(unknown)) from None

    def parse_id_token(self, token: dict[str, Any], nonce: str, **_: Any) -> dict[str, Any] | None:
        """Verify the token response's ID token (Authlib calls this with the session's nonce)."""
        if "id_token" not in token:
            raise IdTokenRefused("missing", "The provider answered without an ID token.")
        return self.with_keys(
            lambda keys: verify_id_token(
                token["id_token"],
                keys,
                issuer=self.settings.issuer,
                client_id=self.settings.client_id,
                nonce=nonce,
                now=self.clock.now(),
                access_token=token.get("access_token"),
            ),
            IdTokenRefused,
        )

    def verify_logout_token(self, logout_token: str) -> LogoutRequestClaims:
        return self.with_keys(
            lambda keys: verify_logout_token(
                logout_token,
                keys,
                issuer=self.settings.issuer,
                client_id=self.settings.client_id,
                now=self.clock.now(),
            ),
            LogoutTokenRefused,
        )


def init_oauth(app: Flask, settings: PortalSettings, clock: Clock) -> None:
    oauth = OAuth(app)
    oauth.register(
        CLIENT_NAME,
        client_cls=DistrictClient,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        server_metadata_url=f"{settings.issuer}/.well-known/openid-configuration",
        client_kwargs={
            "scope": SCOPE,
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "client_secret_basic",
            "default_timeout": settings.http_timeout,
        },
    )
    client = oauth.create_client(CLIENT_NAME)
    client.settings = settings
    client.clock = clock
    app.extensions[EXTENSION_KEY] = client


def district() -> DistrictClient:
    """The provider's client of this app."""
    client: DistrictClient = current_app.extensions[EXTENSION_KEY]
    return client
