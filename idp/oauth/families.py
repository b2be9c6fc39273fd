"""Token families: what one authorization code begat, rotated, checked and revoked as one.

Every code redemption starts a family. Its access tokens name it (the ``fid`` claim), and with
offline access it holds a chain of refresh tokens: each use rotates the current one, and
presenting a rotated one again is taken as theft, which revokes the whole family (RFC 9700
4.14.2). A replayed code revokes the family it started (RFC 6749 4.1.2, RFC 9700 4.2.4).
Refresh tokens are ``rt_``-prefixed on the wire and kept only as SHA-256.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from idp.accounts.models import OPSession
from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession
from idp.oauth.models import AuthorizationCode, RefreshToken, RefreshTokenFamily
from idp.policy import TokenPolicy
from idp.tokens import new_secret, secret_hash

REFRESH_TOKEN_PREFIX = "rt_"  # noqa: S105 (a prefix, not a secret)
# new_secret makes 46 characters; anything much longer is not one of ours.
MAX_REFRESH_TOKEN_LENGTH = 100


class RefreshTokenRejected(Exception):
    """The refresh token cannot be used; ``description`` says why (safe to show the client)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class RefreshTokenReused(RefreshTokenRejected):
    """A rotated refresh token came back: its family is revoked now (and committed)."""


@dataclass(frozen=True)
class FoundRefreshToken:
    """A refresh token and its family; Authlib's refresh grant reads it as its credential."""

    token: RefreshToken
    family: RefreshTokenFamily

    def is_active(self, now: datetime) -> bool:
        return (
            self.token.rotated_at is None
            and self.family.revoked_at is None
            and self.token.expires_at > now
            and self.family.expires_at > now
        )

    def check_client(self, client: object) -> bool:
        return bool(self.family.client_id == getattr(client, "client_id", None))

    def get_scope(self) -> str:
        return self.family.scope


def new_refresh_token() -> str:
    return new_secret("rt")


def looks_like_refresh_token(value: str) -> bool:
    return value.startswith(REFRESH_TOKEN_PREFIX) and len(value) <= MAX_REFRESH_TOKEN_LENGTH


class TokenFamilyService:
    def __init__(self, session: DbSession, *, clock: Clock, policy: TokenPolicy) -> None:
        self.session = session
        self.clock = clock
        self.policy = policy

    # --- issuing -------------------------------------------------------------------------
    def start(self, family_id: str, code: AuthorizationCode, *, refresh_token: str | None) -> None:
        """Open the family of a redeemed code, holding ``refresh_token`` when offline access was granted."""
        now = self.clock.now()
        life = self.policy.refresh_token_life if refresh_token else self.policy.access_token_life
        expires_at = now + life
        if code.acting_staff_id is not None:
            # What staff were granted while emulating ends with the emulation, at the latest.
            expires_at = min(expires_at, self._emulation_end(code) or now)
        family = RefreshTokenFamily(
            id=family_id,
            client_id=code.client_id,
            account_id=code.account_id,
            authorization_code_id=code.id,
            sid=code.sid,
            scope=code.scope,
            auth_time=code.auth_time,
            created_at=now,
            expires_at=expires_at,
            acting_staff_id=code.acting_staff_id,
        )
        self.session.add(family)
        if refresh_token is not None:
            self.add_refresh_token(family, refresh_token)

    def _emulation_end(self, code: AuthorizationCode) -> datetime | None:
        return self.session.execute(
            select(OPSession.emulation_ends_at).where(
                OPSession.account_id == code.account_id, OPSession.sid == code.sid
            )
        ).scalar()

    def add_refresh_token(self, family: RefreshTokenFamily, value: str) -> None:
        """Make ``value`` the family's current refresh token (at the start, and at each rotation)."""
        now = self.clock.now()
        self.session.add(
            RefreshToken(
                family=family,
                token_hash=secret_hash(value),
                created_at=now,
                expires_at=min(now + self.policy.refresh_idle, family.expires_at),
            )
        )

    # --- using ---------------------------------------------------------------------------
    def find(self, value: str) -> FoundRefreshToken | None:
        """Return the refresh token ``value`` and its family, whatever their state."""
        if not looks_like_refresh_token(value):
            return None
        row = self.session.execute(
            select(RefreshToken, RefreshTokenFamily)
            .join(RefreshTokenFamily, RefreshTokenFamily.id == RefreshToken.family_id)
            .where(RefreshToken.token_hash == secret_hash(value))
            # Fresh values even for rows this session loaded before (rotations are bulk UPDATEs).
            .execution_options(populate_existing=True)
        ).first()
        if row is None:
            return None
        token, family = row
        return FoundRefreshToken(token, family)

    def rotate(self, value: str, *, client_id: str) -> FoundRefreshToken:
        """Consume refresh token ``value`` of ``client_id`` once, or raise why it cannot be.

        A token that was already rotated revokes its family (``RefreshTokenReused``, committed).
        """
        found = self.find(value)
        # Another client's token is unknown to this one: no reuse verdict on its behalf.
        if found is None or found.family.client_id != client_id:
            raise RefreshTokenRejected("The refresh token is not valid.")
        token, family = found.token, found.family
        now = self.clock.now()
        if family.revoked_at is not None:
            raise RefreshTokenRejected("The refresh token has been revoked.")
        if token.rotated_at is not None:
            self._reused(family)
        if family.expires_at <= now or token.expires_at <= now:
            raise RefreshTokenRejected("The refresh token has expired.")
        # Two requests with the same token: one UPDATE decides which one rotates it.
        rotated = self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == token.id, RefreshToken.rotated_at.is_(None))
            .values(rotated_at=now)
            .returning(RefreshToken.id)
            .execution_options(synchronize_session=False)
        ).first()
        if rotated is None:
            self._reused(family)
        return found

    def _reused(self, family: RefreshTokenFamily) -> None:
        audit(
            self.session,
            "refresh_token.reused",
            account_id=family.account_id,
            client_id=family.client_id,
            family_id=family.id,
        )
        self.revoke(family, reason="refresh_token_reused")
        # The request fails, yet the revocation must stand.
        self.session.commit()
        raise RefreshTokenReused("The refresh token was already used; its grant is revoked.")

    def refuse_replay(self, code: AuthorizationCode) -> None:
        """RFC 6749 4.1.2 / RFC 9700 4.2.4: a replayed code revokes what its first redemption issued.

        Committed at once: the request that replayed the code fails, the revocation stands.
        """
        audit(
            self.session, "authorization_code.replayed", account_id=code.account_id, client_id=code.client_id
        )
        families = self.session.execute(
            select(RefreshTokenFamily).where(RefreshTokenFamily.authorization_code_id == code.id)
        ).scalars()
        for family in families:
            self.revoke(family, reason="authorization_code_replayed")
        self.session.commit()

    # --- revoking ------------------------------------------------------------------------
    def revoke(self, family: RefreshTokenFamily, *, reason: str) -> None:
        if family.revoked_at is not None:
            return
        family.revoked_at = self.clock.now()
        family.revoked_reason = reason
        audit(
            self.session,
            "refresh_token_family.revoked",
            account_id=family.account_id,
            client_id=family.client_id,
            family_id=family.id,
            reason=reason,
        )

    def revoke_by_id(self, family_id: str, *, reason: str) -> None:
        family = self.session.get(RefreshTokenFamily, family_id)
        if family is not None:
            self.revoke(family, reason=reason)

    def revoke_for_account(self, account_id: str, *, reason: str, keep_sid: str | None = None) -> int:
        """Revoke every live family of the account (a password reset) but those of the OP session
        ``keep_sid`` (the browser that changed its password); return how many."""
        statement = select(RefreshTokenFamily).where(
            RefreshTokenFamily.account_id == account_id, RefreshTokenFamily.revoked_at.is_(None)
        )
        if keep_sid is not None:
            statement = statement.where(
                RefreshTokenFamily.sid.is_(None) | (RefreshTokenFamily.sid != keep_sid)
            )
        families = list(self.session.execute(statement).scalars())
        for family in families:
            self.revoke(family, reason=reason)
        return len(families)

    def revoke_for_session(self, account_id: str, sid: str, *, reason: str) -> int:
        """Revoke every live family of the account granted in OP session ``sid``; return how many."""
        families = list(
            self.session.execute(
                select(RefreshTokenFamily).where(
                    RefreshTokenFamily.account_id == account_id,
                    RefreshTokenFamily.sid == sid,
                    RefreshTokenFamily.revoked_at.is_(None),
                )
            ).scalars()
        )
        for family in families:
            self.revoke(family, reason=reason)
        return len(families)

    def is_live(self, family_id: str) -> bool:
        """Whether access tokens naming this family may still be honoured."""
        revoked_at = self.session.execute(
            select(RefreshTokenFamily.revoked_at).where(RefreshTokenFamily.id == family_id)
        ).first()
        # A family that is gone was deleted with its client or account: nothing of it lives on.
        return revoked_at is not None and revoked_at[0] is None
