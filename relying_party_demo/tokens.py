"""Verifying what the provider signs: ID tokens (OIDC Core 3.1.3.7) and logout tokens
(OIDC Back-Channel Logout 1.0 2.6). Explicit algorithm lists, never ``none`` or HS*.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

# The provider signs with RS256 (ES256 per client). An HMAC or "none" would let anyone who
# knows the public key or nothing at all mint tokens, so they are never on the list.
ALGORITHMS = ("RS256", "ES256")
LEEWAY = timedelta(seconds=60)
MAX_TOKEN_LENGTH = 32_768
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
# Back-Channel Logout 1.0 2.6: iat is checked as in ID tokens; older tokens are refused.
LOGOUT_TOKEN_MAX_AGE = timedelta(minutes=10)
# JOSE typ values that mark other kinds of JWT: none of them is an ID token.
NOT_ID_TOKEN_TYPES = frozenset({"logout+jwt", "at+jwt"})


class TokenRefused(ValueError):
    """A token failed verification; ``reason`` says which check, for logs and tests."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class IdTokenRefused(TokenRefused):
    pass


class LogoutTokenRefused(TokenRefused):
    pass


class UnknownSigningKey(TokenRefused):
    """The token names a key (``kid``) the key set does not hold: fetch the JWKS again, once."""


class LogoutTokenReplayed(LogoutTokenRefused):
    """A logout token whose ``jti`` was received before (Back-Channel Logout 1.0 2.6 allows the check)."""

    def __init__(self) -> None:
        super().__init__("jti", "The logout token was received before.")


@dataclass(frozen=True)
class LogoutRequestClaims:
    """Whom a verified logout token signs out, and what it takes to refuse the token's replay."""

    sid: str | None
    sub: str | None
    jti: str
    # After this the token would be refused as too old or expired: its jti need not be kept.
    usable_until: datetime


def verify_id_token(
    id_token: str,
    jwks: KeySet,
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    now: datetime,
    access_token: str | None = None,
    algorithms: tuple[str, ...] = ALGORITHMS,
) -> dict[str, Any]:
    """Return the claims of ``id_token`` once every check of OIDC Core 3.1.3.7 has passed."""
    header = _signed_header(id_token, algorithms, IdTokenRefused)
    if header.get("typ") in NOT_ID_TOKEN_TYPES:
        raise IdTokenRefused("typ", "The provider's answer is not an ID token.")
    claims = _verified_claims(id_token, jwks, algorithms, IdTokenRefused)
    registry = jwt.JWTClaimsRegistry(
        now=int(now.timestamp()),
        leeway=int(LEEWAY.total_seconds()),
        iss={"essential": True, "value": issuer},
        sub={"essential": True},
        aud={"essential": True, "value": client_id},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True},
    )
    _validate(registry, claims, IdTokenRefused)
    _check_audience(claims, client_id, IdTokenRefused)
    # OIDC Core 3.1.3.7 (11): the nonce must be the one this browser's sign-in sent.
    if not isinstance(claims["nonce"], str) or not hmac.compare_digest(claims["nonce"], nonce):
        raise IdTokenRefused("nonce", "The ID token does not answer this sign-in (wrong nonce).")
    # OIDC Core 3.2.2.9: at_hash is the left half of the access token's hash.
    if (
        access_token is not None
        and "at_hash" in claims
        and not hmac.compare_digest(str(claims["at_hash"]), _half_hash(access_token, str(header["alg"])))
    ):
        raise IdTokenRefused("at_hash", "The ID token does not belong to the access token it came with.")
    return claims


def verify_logout_token(
    logout_token: str,
    jwks: KeySet,
    *,
    issuer: str,
    client_id: str,
    now: datetime,
    algorithms: tuple[str, ...] = ALGORITHMS,
) -> LogoutRequestClaims:
    """Return whom a logout token signs out once OIDC Back-Channel Logout 1.0 2.6 is satisfied."""
    header = _signed_header(logout_token, algorithms, LogoutTokenRefused)
    # 2.4: logout tokens are typed; an older provider may send none, but never another type.
    if header.get("typ") not in (None, "logout+jwt"):
        raise LogoutTokenRefused("typ", "The token is not a logout token.")
    claims = _verified_claims(logout_token, jwks, algorithms, LogoutTokenRefused)
    registry = jwt.JWTClaimsRegistry(
        now=int(now.timestamp()),
        leeway=int(LEEWAY.total_seconds()),
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        iat={"essential": True},
        events={"essential": True},
    )
    _validate(registry, claims, LogoutTokenRefused)
    _check_audience(claims, client_id, LogoutTokenRefused)
    if claims["iat"] < (now - LOGOUT_TOKEN_MAX_AGE).timestamp():
        raise LogoutTokenRefused("iat", "The logout token is too old.")
    events = claims["events"]
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
        raise LogoutTokenRefused("events", "The token does not carry the back-channel logout event.")
    if "nonce" in claims:
        # 2.4: a nonce is forbidden, so that an ID token can never pass for a logout token.
        raise LogoutTokenRefused("nonce", "A logout token may not carry a nonce.")
    sid, sub = claims.get("sid"), claims.get("sub")
    if sid is None and sub is None:
        raise LogoutTokenRefused("sid", "The logout token names neither a session (sid) nor a user (sub).")
    for name, value in (("sid", sid), ("sub", sub)):
        if value is not None and (not isinstance(value, str) or not value):
            raise LogoutTokenRefused(name, f"The logout token's {name} is not a string.")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        # 2.4: jti is required; without it a replay could not be told from a new logout.
        raise LogoutTokenRefused("jti", "The logout token has no jti.")
    return LogoutRequestClaims(sid=sid, sub=sub, jti=jti, usable_until=_usable_until(claims))


def _usable_until(claims: dict[str, Any]) -> datetime:
    """When the checks above start refusing the token: it is too old, or expired past leeway."""
    until = datetime.fromtimestamp(claims["iat"], UTC) + LOGOUT_TOKEN_MAX_AGE
    if isinstance(claims.get("exp"), int | float):
        until = min(until, datetime.fromtimestamp(claims["exp"], UTC) + LEEWAY)
    return until


def _signed_header(value: str, algorithms: tuple[str, ...], error: type[TokenRefused]) -> dict[str, Any]:
    if not isinstance(value, str) or not value or len(value) > MAX_TOKEN_LENGTH:
        raise error("malformed", "The token is missing or too long.")
    try:
        header: dict[str, Any] = jws.extract_compact(value.encode()).headers()
    except (JoseError, ValueError):
        raise error("malformed", "The token is not a signed JWT.") from None
    if header.get("alg") not in algorithms:
        raise error("alg", f"The token is signed with {header.get('alg')!r}, which the portal refuses.")
    return header


def _verified_claims(
    value: str, jwks: KeySet, algorithms: tuple[str, ...], error: type[TokenRefused]
) -> dict[str, Any]:
    try:
        token = jwt.decode(value, jwks, algorithms=list(algorithms))
    except InvalidKeyIdError:
        raise UnknownSigningKey("kid", "The token names no signing key the provider publishes.") from None
    except BadSignatureError:
        raise error("signature", "The token's signature does not verify.") from None
    except (JoseError, ValueError):
        raise error("malformed", "The token could not be read.") from None
    return dict(token.claims)


def _validate(registry: jwt.JWTClaimsRegistry, claims: dict[str, Any], error: type[TokenRefused]) -> None:
    messages = {
        "iss": "The token was issued by another provider.",
        "aud": "The token was issued to another portal.",
        "exp": "The token has expired.",
        "iat": "The token's issue time is not valid.",
    }
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise error("exp", messages["exp"]) from None
    except MissingClaimError as missing:
        first = missing.claim.split(",")[0]
        raise error(first, f"The token lacks the {missing.claim} claim.") from None
    except InvalidClaimError as invalid:
        message = messages.get(invalid.claim, f"The token's {invalid.claim} claim is not valid.")
        raise error(invalid.claim, message) from None


def _check_audience(claims: dict[str, Any], client_id: str, error: type[TokenRefused]) -> None:
    # OIDC Core 3.1.3.7 (3): refuse tokens that also name audiences this portal does not trust;
    # (4)/(5): with several audiences, azp must be this portal.
    aud = claims["aud"]
    audiences = [aud] if isinstance(aud, str) else list(aud)
    if audiences != [client_id]:
        raise error("aud", "The token was issued to other portals too.")
    if "azp" in claims and claims["azp"] != client_id:
        raise error("azp", "The token was issued to another portal.")


def _half_hash(value: str, alg: str) -> str:
    if alg not in ("RS256", "ES256"):
        raise IdTokenRefused("alg", f"No at_hash rule for {alg!r}.")
    digest = hashlib.sha256(value.encode("ascii")).digest()  # both algorithms hash with SHA-256
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")
