"""Checking the bearer access tokens presented to /userinfo (RFC 6750, RFC 9068)."""

from __future__ import annotations

from dataclasses import dataclass

from joserfc.errors import JoseError

from idp.accounts.models import Account, AccountStatus
from idp.extensions import db
from idp.runtime import runtime

MAX_TOKEN_LENGTH = 8192


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


def verify_access_token(authorization_header: str) -> VerifiedAccess:
    """Return what a valid ``Authorization: Bearer`` access token grants, or raise."""
    scheme, _, value = authorization_header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AccessTokenRejected("A bearer access token is required.", error="invalid_request")
    value = value.strip()
    if len(value) > MAX_TOKEN_LENGTH:
        raise AccessTokenRejected("The access token is malformed.")
    rt = runtime()
    try:
        token = rt.keys().verify(value)
    except (JoseError, ValueError):
        raise AccessTokenRejected("The access token is malformed or its signature is not valid.") from None
    claims = token.claims
    now = int(rt.clock.now().timestamp())
    if token.header.get("typ") != "at+jwt":
        raise AccessTokenRejected("The token is not an access token.")
    if claims.get("iss") != rt.settings.issuer:
        raise AccessTokenRejected("The access token was issued by another provider.")
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= now:
        raise AccessTokenRejected("The access token has expired.")
    account = db.session.get(Account, str(claims.get("sub", "")))
    if account is None or account.status is AccountStatus.DISABLED:
        raise AccessTokenRejected("The account behind this access token is not available.")
    return VerifiedAccess(account, str(claims.get("client_id", "")), str(claims.get("scope", "")))
