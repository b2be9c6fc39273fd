"""Fresh claims: the linked students as they are now, not as they were at sign-in.

The ID token's claims are a snapshot. Once they are older than ``FRESH_FOR`` (or at once on
return from Account Preferences) the portal asks the provider again: a new access token from
the refresh token (offline access, rotated by the provider on each use), then userinfo, whose
claims come from the same table as the ID token's. Without a refresh token the access token is
used while it lasts. Requests of one session take turns (the row's lock, ``SessionStore.locked``)
and look again once their turn comes, so one refresh serves them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

FRESH_FOR = timedelta(minutes=1)
# Claims only the ID token carries (its own bookkeeping); userinfo never replaces them.
ID_TOKEN_ONLY = frozenset(
    {"iss", "aud", "exp", "iat", "nonce", "azp", "at_hash", "sid", "auth_time", "acr", "amr"}
)


class ClaimsRefused(Exception):
    """The provider no longer vouches for this session (a refused refresh token, another subject)."""


@dataclass(frozen=True)
class HeldTokens:
    """What the portal keeps from the token endpoint to ask again later (in its session row)."""

    access_token: str
    refresh_token: str | None
    expires_at: float  # POSIX seconds
    claims_at: float  # when the claims were last read

    @classmethod
    def from_response(
        cls, token: dict[str, Any], now: datetime, previous: HeldTokens | None = None
    ) -> HeldTokens:
        expires_in = token.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 0.0
        refresh = token.get("refresh_token")
        return cls(
            access_token=str(token.get("access_token", "")),
            # A refresh response without a new refresh token leaves the old one in force (RFC 6749 6).
            refresh_token=refresh
            if isinstance(refresh, str)
            else (previous.refresh_token if previous else None),
            expires_at=now.timestamp() + lifetime,
            claims_at=now.timestamp(),
        )

    @classmethod
    def load(cls, value: object) -> HeldTokens | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(
                access_token=str(value["access_token"]),
                refresh_token=value.get("refresh_token"),
                expires_at=float(value["expires_at"]),
                claims_at=float(value["claims_at"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def dump(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "claims_at": self.claims_at,
        }

    def stale(self, now: datetime) -> bool:
        return now.timestamp() - self.claims_at >= FRESH_FOR.total_seconds()

    def usable(self, now: datetime) -> bool:
        # A few seconds' margin: the token must still be good when the provider reads it.
        return bool(self.access_token) and now.timestamp() < self.expires_at - 5


def refresh_needed(locked: HeldTokens, seen: HeldTokens, *, asked: bool, now: datetime) -> bool:
    """Whether a request holding the session's lock must still ask the provider.

    ``seen`` is what the request found before it waited for the lock, ``locked`` what the row
    holds now. Newer claims mean another request of the session (a second tab, the printer view)
    refreshed meanwhile: its tokens are used as they are, for a second use of the refresh token
    it spent would be taken as theft and revoke the family (RFC 9700 4.14.2).
    """
    if locked.claims_at > seen.claims_at:
        return False
    return asked or locked.stale(now)


def merged_claims(current: dict[str, Any], userinfo: dict[str, Any], sub: str) -> dict[str, Any]:
    """The session's claims with userinfo's values; refused when userinfo names someone else."""
    # OIDC Core 5.3.2: the userinfo sub MUST match the ID token's, or the response is not used.
    if userinfo.get("sub") != sub:
        raise ClaimsRefused("userinfo names another subject")
    fresh = {name: value for name, value in userinfo.items() if name not in ID_TOKEN_ONLY}
    kept = {name: value for name, value in current.items() if name in ID_TOKEN_ONLY}
    return {**kept, **fresh}
