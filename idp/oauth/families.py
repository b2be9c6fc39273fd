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
from typing import Any, cast

from sqlalchemy import CursorResult, Insert, String, Table, bindparam, insert, literal_column, select, update
from sqlalchemy.types import NullType

from idp.audit import AUDIT_EVENT_TABLE, audit
from idp.clock import Clock
from idp.db import DbSession, new_id
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
    """A rotated refresh token came back: its family is revoked now."""


@dataclass(frozen=True)
class FamilyStart:
    family_id: str
    refresh_token: str | None


@dataclass(frozen=True)
class FoundRefreshToken:
    token: RefreshToken
    family: RefreshTokenFamily

    def is_active(self, now: datetime) -> bool:
        return (
            self.token.rotated_at is None
            and self.family.revoked_at is None
            and self.token.expires_at > now
            and self.family.expires_at > now
        )


# Core statements on the tables, built once: the token endpoint's hot path (bench/token_exchange.py).
_CODES = cast(Table, AuthorizationCode.__table__)
_FAMILIES = cast(Table, RefreshTokenFamily.__table__)
_TOKENS = cast(Table, RefreshToken.__table__)
_INSERT_FAMILY = insert(_FAMILIES)
_INSERT_TOKEN = insert(_TOKENS)
_INSERT_AUDIT = insert(AUDIT_EVENT_TABLE)
_CONSUME_CODE = (
    update(_CODES)
    .where(_CODES.c.id == bindparam("code_id"), _CODES.c.used_at.is_(None))
    .values(used_at=bindparam("now"))
)
_FAMILY_COLUMNS = (
    *("id", "client_id", "account_id", "authorization_code_id", "sid", "scope", "auth_time"),
    *("created_at", "expires_at"),
)
_TOKEN_COLUMNS = ("id", "family_id", "token_hash", "created_at", "expires_at")
_AUDIT_COLUMNS = ("id", "name", "occurred_at", "account_id", "client_id", "ip_address", "details")


def _typed(table: Table, prefix: str, names: tuple[str, ...], **overrides: Any) -> list[Any]:
    """Bound parameters typed as ``table``'s columns (PostgreSQL casts them: no unknown types)."""

    def typed(name: str) -> Any:
        column_type = table.c[name].type
        # A foreign key's type is the referred column's, unknown until both tables are mapped.
        return bindparam(
            f"{prefix}{name}", type_=String() if isinstance(column_type, NullType) else column_type
        )

    return [overrides.get(name, typed(name)) for name in names]


def _redeem_in_one_statement(*, offline: bool) -> Insert:
    """PostgreSQL: consume the code, open its family, issue the refresh token and write the audit
    row in one statement (data-modifying CTEs); the inserts select from the consumed row, so a
    code already used writes nothing and the statement returns no row.

    One round trip instead of four; the statement is atomic on its own.
    """
    consumed = _CONSUME_CODE.returning(_CODES.c.id).cte("consumed")
    family = (
        insert(_FAMILIES)
        .from_select(
            list(_FAMILY_COLUMNS),
            select(*_typed(_FAMILIES, "family_", _FAMILY_COLUMNS, authorization_code_id=consumed.c.id)),
        )
        .returning(_FAMILIES.c.id)
        .cte("family")
    )
    audit_row = select(*_typed(AUDIT_EVENT_TABLE, "audit_", _AUDIT_COLUMNS)).select_from(consumed)
    statement: Insert = (
        insert(AUDIT_EVENT_TABLE)
        .from_select(list(_AUDIT_COLUMNS), audit_row)
        .returning(literal_column("1"))
        .add_cte(family)
    )
    if offline:
        token = insert(_TOKENS).from_select(
            list(_TOKEN_COLUMNS),
            select(*_typed(_TOKENS, "token_", _TOKEN_COLUMNS, family_id=family.c.id)),
        )
        statement = statement.add_cte(token.cte("token"))
    return statement


_REDEEM = {offline: _redeem_in_one_statement(offline=offline) for offline in (False, True)}


def looks_like_refresh_token(value: str) -> bool:
    return value.startswith(REFRESH_TOKEN_PREFIX) and len(value) <= MAX_REFRESH_TOKEN_LENGTH


class TokenFamilyService:
    def __init__(self, session: DbSession, *, clock: Clock, policy: TokenPolicy) -> None:
        self.session = session
        self.clock = clock
        self.policy = policy

    # --- issuing -------------------------------------------------------------------------
    def start(
        self,
        *,
        family_id: str,
        client_id: str,
        account_id: str,
        authorization_code_id: str,
        sid: str | None,
        scope: str,
        auth_time: datetime,
        offline: bool,
    ) -> FamilyStart:
        """Open the family of a redeemed code; with ``offline``, issue its first refresh token."""
        now = self.clock.now()
        expires_at = now + (self.policy.refresh_token_life if offline else self.policy.access_token_life)
        self.session.execute(
            _INSERT_FAMILY,
            {
                "id": family_id,
                "client_id": client_id,
                "account_id": account_id,
                "authorization_code_id": authorization_code_id,
                "sid": sid,
                "scope": scope,
                "auth_time": auth_time,
                "created_at": now,
                "expires_at": expires_at,
                "revoked_at": None,
                "revoked_reason": None,
            },
        )
        refresh_token = self._issue(family_id, expires_at, now) if offline else None
        return FamilyStart(family_id, refresh_token)

    def redeem_code(
        self,
        *,
        code_id: str,
        family_id: str,
        client_id: str,
        account_id: str,
        sid: str | None,
        scope: str,
        auth_time: datetime,
        offline: bool,
        audit_row: dict[str, Any],
    ) -> FamilyStart | None:
        """Consume authorization code ``code_id`` once and open its family (``start``), with
        ``audit_row`` (``idp.audit.audit_values``) recording it; None if the code was used already.

        The consumption is one atomic ``UPDATE … WHERE used_at IS NULL``: of two concurrent
        redemptions, one finds the row used and writes nothing.
        """
        now = self.clock.now()
        expires_at = now + (self.policy.refresh_token_life if offline else self.policy.access_token_life)
        family = {
            "id": family_id,
            "client_id": client_id,
            "account_id": account_id,
            "authorization_code_id": code_id,
            "sid": sid,
            "scope": scope,
            "auth_time": auth_time,
            "created_at": now,
            "expires_at": expires_at,
        }
        refresh_token = new_secret("rt") if offline else None
        token = {
            "id": new_id(),
            "family_id": family_id,
            "token_hash": secret_hash(refresh_token) if refresh_token else None,
            "created_at": now,
            "expires_at": min(now + self.policy.refresh_idle, expires_at),
        }
        if self.session.get_bind().dialect.name == "postgresql":
            params: dict[str, Any] = {"code_id": code_id, "now": now}
            params.update({f"family_{k}": v for k, v in family.items()})
            params.update({f"audit_{k}": v for k, v in audit_row.items()})
            if offline:
                params.update({f"token_{k}": v for k, v in token.items()})
            if self.session.execute(_REDEEM[offline], params).first() is None:
                return None
            return FamilyStart(family_id, refresh_token)
        consumed = self.session.execute(_CONSUME_CODE, {"code_id": code_id, "now": now})
        if cast(CursorResult[Any], consumed).rowcount != 1:
            return None
        self.session.execute(_INSERT_FAMILY, family)
        if offline:
            self.session.execute(_INSERT_TOKEN, token)
        self.session.execute(_INSERT_AUDIT, audit_row)
        return FamilyStart(family_id, refresh_token)

    def issue_next(self, family: RefreshTokenFamily) -> str:
        """Issue the refresh token that replaces the one just rotated."""
        return self._issue(family.id, family.expires_at, self.clock.now())

    def _issue(self, family_id: str, family_expires_at: datetime, now: datetime) -> str:
        value = new_secret("rt")
        self.session.execute(
            _INSERT_TOKEN,
            {
                "id": new_id(),
                "family_id": family_id,
                "token_hash": secret_hash(value),
                "created_at": now,
                "expires_at": min(now + self.policy.refresh_idle, family_expires_at),
                "rotated_at": None,
            },
        )
        return value

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

        A token that was already rotated revokes its family (``RefreshTokenReused``); the caller
        must commit that even though the request fails.
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
        consumed = self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == token.id, RefreshToken.rotated_at.is_(None))
            .values(rotated_at=now)
            .execution_options(synchronize_session=False)
        )
        if cast(CursorResult[Any], consumed).rowcount != 1:
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
        raise RefreshTokenReused("The refresh token was already used; its grant is revoked.")

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

    def revoke_for_account(self, account_id: str, *, reason: str) -> int:
        """Revoke every live family of the account (a password reset); return how many."""
        families = list(
            self.session.execute(
                select(RefreshTokenFamily).where(
                    RefreshTokenFamily.account_id == account_id, RefreshTokenFamily.revoked_at.is_(None)
                )
            ).scalars()
        )
        for family in families:
            self.revoke(family, reason=reason)
        return len(families)

    def revoke_for_code(self, authorization_code_id: str, *, reason: str) -> None:
        """Revoke what the code's first redemption issued (RFC 6749 4.1.2: SHOULD)."""
        families = self.session.execute(
            select(RefreshTokenFamily).where(
                RefreshTokenFamily.authorization_code_id == authorization_code_id
            )
        ).scalars()
        for family in families:
            self.revoke(family, reason=reason)

    def is_live(self, family_id: str) -> bool:
        """Whether access tokens naming this family may still be honoured."""
        revoked_at = self.session.execute(
            select(RefreshTokenFamily.revoked_at).where(RefreshTokenFamily.id == family_id)
        ).first()
        # A family that is gone was deleted with its client or account: nothing of it lives on.
        return revoked_at is not None and revoked_at[0] is None
