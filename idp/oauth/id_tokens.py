"""ID tokens: the claims we sign (OIDC Core 2, 3.1.3.6, 12.2), and the ones we accept back as hints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from authlib.oidc.core.util import create_half_hash
from joserfc.errors import JoseError

from idp.accounts.models import Account
from idp.clock import Clock
from idp.keys.ring import KeyRing
from idp.oauth.claims import ClaimsBuilder, without_reserved
from idp.oauth.models import Client
from idp.policy import TokenPolicy

# Longer than any ID token we sign with every student claim; refuses junk before parsing it.
MAX_HINT_LENGTH = 16_384
# JOSE typ values of our other JWTs: an access or logout token is never an ID token hint.
NOT_ID_TOKEN_TYPES = frozenset({"at+jwt", "logout+jwt"})


def act_claim(staff_id: str) -> dict[str, str]:
    """Return the RFC 8693 4.1 ``act`` claim naming the staff member who acts as the user."""
    return {"sub": f"staff:{staff_id}"}


class InvalidIdTokenHint(ValueError):
    """The id_token_hint is not an ID token this provider issued."""


@dataclass(frozen=True)
class IdTokenHint:
    sub: str
    audiences: tuple[str, ...]
    sid: str | None
    claims: dict[str, Any]


def id_token_claims(
    user_claims: dict[str, Any],
    *,
    issuer: str,
    sub: str,
    client_id: str,
    auth_time: datetime,
    now: datetime,
    policy: TokenPolicy,
    alg: str,
    access_token: str | None,
    nonce: str | None = None,
    sid: str | None = None,
    acting_staff_id: str | None = None,
) -> dict[str, Any]:
    """The claims of an ID token; user data never overwrites the ones the token owns."""
    issued_at = int(now.timestamp())
    claims = without_reserved(user_claims)
    claims.update(
        iss=issuer,
        sub=sub,
        aud=client_id,
        iat=issued_at,
        exp=issued_at + int(policy.id_token_life.total_seconds()),
        # OIDC Core 12.2: after a refresh, still the time of the original authentication.
        auth_time=int(auth_time.timestamp()),
        amr=["pwd"],
    )
    if nonce:
        claims["nonce"] = nonce
    if sid:
        # OIDC Back-Channel Logout 1.0 2.1: the session the portal may later be told has ended.
        claims["sid"] = sid
    if acting_staff_id:
        claims["act"] = act_claim(acting_staff_id)
    if access_token:
        # OIDC Core 3.1.3.6: at_hash is the left half of the hash of the access token.
        at_hash = create_half_hash(access_token, alg)
        if at_hash is not None:
            claims["at_hash"] = at_hash.decode("ascii")
    return claims


def read_id_token_hint(value: str, *, keys: KeyRing, issuer: str) -> IdTokenHint:
    """Return who an ``id_token_hint`` names, or raise ``InvalidIdTokenHint``.

    The signature and issuer must be ours (KeyRing.verify: published keys, explicit algorithms,
    revoked keys refused). An expired hint is still a hint (OIDC Core 3.1.2.1; RP-Initiated
    Logout 1.0 2: the OP SHOULD accept it when the session is current or recent).
    """
    if not value or len(value) > MAX_HINT_LENGTH:
        raise InvalidIdTokenHint("The id_token_hint is not a valid ID token.")
    try:
        token = keys.verify(value)
    except (JoseError, ValueError):
        raise InvalidIdTokenHint("The id_token_hint is not a valid ID token of this provider.") from None
    claims = token.claims
    if token.header.get("typ") in NOT_ID_TOKEN_TYPES:
        raise InvalidIdTokenHint("The id_token_hint is not an ID token.")
    if claims.get("iss") != issuer:
        raise InvalidIdTokenHint("The id_token_hint was issued by another provider.")
    sub = claims.get("sub")
    aud = claims.get("aud")
    audiences = (aud,) if isinstance(aud, str) else tuple(a for a in aud or () if isinstance(a, str))
    if not isinstance(sub, str) or not sub or not audiences:
        raise InvalidIdTokenHint("The id_token_hint is not a valid ID token.")
    sid = claims.get("sid")
    return IdTokenHint(
        sub=sub, audiences=audiences, sid=sid if isinstance(sid, str) else None, claims=dict(claims)
    )


class IdTokens:
    """Sign ID tokens with the active key of the client's algorithm; read them back as hints."""

    def __init__(
        self, *, keys: KeyRing, claims: ClaimsBuilder, issuer: str, clock: Clock, policy: TokenPolicy
    ) -> None:
        self.keys = keys
        self.claims = claims
        self.issuer = issuer
        self.clock = clock
        self.policy = policy

    def sign(
        self,
        client: Client,
        account: Account,
        scope: str,
        *,
        auth_time: datetime,
        access_token: str | None,
        nonce: str | None = None,
        sid: str | None = None,
        acting_staff_id: str | None = None,
    ) -> str:
        alg = client.id_token_signed_response_alg
        claims = id_token_claims(
            self.claims.for_scope(account, scope),
            issuer=self.issuer,
            sub=account.id,
            client_id=client.client_id,
            auth_time=auth_time,
            now=self.clock.now(),
            policy=self.policy,
            alg=alg,
            access_token=access_token,
            nonce=nonce,
            sid=sid,
            acting_staff_id=acting_staff_id,
        )
        return self.keys.sign(claims, alg=alg)

    def read_hint(self, value: str) -> IdTokenHint:
        return read_id_token_hint(value, keys=self.keys, issuer=self.issuer)
