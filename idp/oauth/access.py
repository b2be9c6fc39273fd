"""The access tokens this provider issued, checked: bearer tokens at /userinfo (RFC 6750, RFC 9068)
and any token presented to /introspect or /revoke (RFC 7662, RFC 7009)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from joserfc.errors import JoseError

from idp.accounts.models import Account
from idp.clock import Clock
from idp.db import DbSession
from idp.keys.ring import KeyRing
from idp.oauth.families import TokenFamilyService, looks_like_refresh_token
from idp.oauth.scopes import admin_api_audience

MAX_TOKEN_LENGTH = 8192
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 (a JOSE typ, not a secret)
# The claim naming the token family (refresh_token_family.id) an access token was issued in.
FAMILY_CLAIM = "fid"


class AccessTokenRejected(Exception):
    def __init__(self, description: str, *, error: str = "invalid_token", status: int = 401) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class VerifiedAccess:
    account: Account
    client_id: str
    scope: str


@dataclass(frozen=True)
class InspectedToken:
    """A token this provider issued, as /introspect and /revoke see it (Authlib's token model)."""

    kind: str  # "access_token" or "refresh_token"
    client_id: str
    family_id: str | None
    active: bool
    claims: dict[str, Any] = field(default_factory=dict)

    def check_client(self, client: Any) -> bool:
        return bool(self.client_id == client.get_client_id())

    def get_scope(self) -> str:
        return str(self.claims.get("scope", ""))


class AccessTokens:
    def __init__(
        self,
        session: DbSession,
        *,
        keys: KeyRing,
        issuer: str,
        clock: Clock,
        families: TokenFamilyService,
    ) -> None:
        self.session = session
        self.keys = keys
        self.issuer = issuer
        self.clock = clock
        self.families = families

    def verify(self, authorization_header: str) -> VerifiedAccess:
        """Return what a valid ``Authorization: Bearer`` access token grants, or raise."""
        scheme, _, value = authorization_header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AccessTokenRejected("A bearer access token is required.", error="invalid_request")
        value = value.strip()
        if len(value) > MAX_TOKEN_LENGTH:
            raise AccessTokenRejected("The access token is malformed.")
        claims = self._verified_claims(value)
        # An admin API token (client credentials, no account) is for the admin API alone.
        audience = claims.get("aud")
        if admin_api_audience(self.issuer) in (audience if isinstance(audience, list) else [audience]):
            raise AccessTokenRejected("The access token is for the admin API.")
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= self._now():
            raise AccessTokenRejected("The access token has expired.")
        family_id = claims.get(FAMILY_CLAIM)
        if isinstance(family_id, str) and not self.families.is_live(family_id):
            raise AccessTokenRejected("The access token has been revoked.")
        account = self._available_account(str(claims.get("sub", "")))
        if account is None:
            raise AccessTokenRejected("The account behind this access token is not available.")
        return VerifiedAccess(account, str(claims.get("client_id", "")), str(claims.get("scope", "")))

    def inspect(self, value: str) -> InspectedToken | None:
        """Return what ``value`` is if this provider issued it, active or not; else None."""
        if not value or len(value) > MAX_TOKEN_LENGTH:
            return None
        if looks_like_refresh_token(value):
            return self._inspect_refresh_token(value)
        return self._inspect_access_token(value)

    def _verified_claims(self, value: str) -> dict[str, Any]:
        try:
            # KeyRing.verify: our published keys only, explicit algorithms, revoked keys refused.
            token = self.keys.verify(value)
        except (JoseError, ValueError):
            raise AccessTokenRejected(
                "The access token is malformed or its signature is not valid."
            ) from None
        if token.header.get("typ") != ACCESS_TOKEN_TYPE:
            raise AccessTokenRejected("The token is not an access token.")
        if token.claims.get("iss") != self.issuer:
            raise AccessTokenRejected("The access token was issued by another provider.")
        return dict(token.claims)

    def _inspect_access_token(self, value: str) -> InspectedToken | None:
        try:
            claims = self._verified_claims(value)
        except AccessTokenRejected:
            return None
        family_id = claims.get(FAMILY_CLAIM)
        family_id = family_id if isinstance(family_id, str) else None
        exp = claims.get("exp")
        active = isinstance(exp, int) and exp > self._now()
        if active and family_id is not None:
            active = self.families.is_live(family_id)
        if active:
            active = self._available_account(str(claims.get("sub", ""))) is not None
        # RFC 7662 2.2: what the resource server needs; the token's own claims, family id aside.
        payload = {
            "scope": claims.get("scope", ""),
            "client_id": claims.get("client_id"),
            "token_type": "Bearer",
            "exp": exp,
            "iat": claims.get("iat"),
            "sub": claims.get("sub"),
            "aud": claims.get("aud"),
            "iss": claims.get("iss"),
            "jti": claims.get("jti"),
        }
        if "act" in claims:
            # RFC 8693 4.1: who acts for the subject (staff emulating a parent), for introspection too.
            payload["act"] = claims["act"]
        return InspectedToken("access_token", str(claims.get("client_id", "")), family_id, active, payload)

    def _inspect_refresh_token(self, value: str) -> InspectedToken | None:
        found = self.families.find(value)
        if found is None:
            return None
        family, token = found.family, found.token
        active = found.is_active(self.clock.now()) and self._available_account(family.account_id) is not None
        payload = {
            "scope": family.scope,
            "client_id": family.client_id,
            "exp": int(min(token.expires_at, family.expires_at).timestamp()),
            "iat": int(token.created_at.timestamp()),
            "sub": family.account_id,
            "iss": self.issuer,
        }
        return InspectedToken("refresh_token", family.client_id, family.id, active, payload)

    def _available_account(self, account_id: str) -> Account | None:
        account = self.session.get(Account, account_id) if account_id else None
        return account if account is not None and account.is_available(self.clock.now()) else None

    def _now(self) -> int:
        return int(self.clock.now().timestamp())
