"""Deleting rows nobody can use any more, once they have been kept for the retention time.

A row stops being usable when it expires, is used up, is revoked, or (mail) is sent or given up
(a counter entry past its window and its lock goes at once);
it is kept ``IDP_RETENTION_SECONDS`` longer (30 days by default) so that a replayed code or a
reused refresh token is still recognised, and so that operators can still read what happened.
The audit log, accounts, consents and password history are never pruned here. ``idp worker``
runs this once an hour (idp.worker).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, delete, or_, select

from idp.accounts.recovery_models import RecoveryToken
from idp.counters.models import CounterEntry
from idp.db import DbSession
from idp.mail.delivery import MAX_ATTEMPTS
from idp.mail.models import OutboundEmail
from idp.oauth.models import AuthorizationCode, AuthorizationRequest, RefreshToken, RefreshTokenFamily


@dataclass(frozen=True)
class Pruned:
    """How many rows of each kind went."""

    authorization_requests: int = 0
    authorization_codes: int = 0
    refresh_token_families: int = 0
    refresh_tokens: int = 0
    recovery_tokens: int = 0
    mails: int = 0
    counters: int = 0

    @property
    def total(self) -> int:
        return sum(astuple(self))

    def describe(self) -> str:
        return ", ".join(f"{name.replace('_', ' ')}: {count}" for name, count in vars(self).items() if count)


@dataclass
class Schedule:
    """When a recurring job is due: at its first chance, then once every ``every``."""

    every: timedelta
    last: datetime | None = None

    def due(self, now: datetime) -> bool:
        if self.last is not None and now - self.last < self.every:
            return False
        self.last = now
        return True


def prune(session: DbSession, *, now: datetime, keep: timedelta) -> Pruned:
    """Delete what stopped being usable before ``now - keep``, in one transaction."""
    cutoff = now - keep

    def rows(statement: Delete) -> int:
        return cast(CursorResult[Any], session.execute(statement)).rowcount

    requests = rows(delete(AuthorizationRequest).where(AuthorizationRequest.expires_at < cutoff))
    codes = rows(delete(AuthorizationCode).where(AuthorizationCode.expires_at < cutoff))
    ended_families = select(RefreshTokenFamily.id).where(
        or_(RefreshTokenFamily.expires_at < cutoff, RefreshTokenFamily.revoked_at < cutoff)
    )
    # Tokens before their families, so that the count is not hidden in ON DELETE CASCADE; a live
    # family loses only the rotated tokens that are past their own end too.
    refresh_tokens = rows(
        delete(RefreshToken).where(
            or_(RefreshToken.expires_at < cutoff, RefreshToken.family_id.in_(ended_families))
        )
    )
    families = rows(delete(RefreshTokenFamily).where(RefreshTokenFamily.id.in_(ended_families)))
    recovery_tokens = rows(delete(RecoveryToken).where(RecoveryToken.expires_at < cutoff))
    # Mail still being retried stays, however old: it is not finished with.
    mails = rows(
        delete(OutboundEmail).where(
            OutboundEmail.created_at < cutoff,
            or_(OutboundEmail.sent_at.is_not(None), OutboundEmail.attempts >= MAX_ATTEMPTS),
        )
    )
    # A counter entry (idp.counters.database) past its window and its lock counts nothing and locks
    # nothing: it goes at once, not after the retention time.
    counters = rows(
        delete(CounterEntry).where(
            or_(CounterEntry.count_ends.is_(None), CounterEntry.count_ends <= now),
            or_(CounterEntry.locked_until.is_(None), CounterEntry.locked_until <= now),
        )
    )
    session.commit()
    return Pruned(
        authorization_requests=requests,
        authorization_codes=codes,
        refresh_token_families=families,
        refresh_tokens=refresh_tokens,
        recovery_tokens=recovery_tokens,
        mails=mails,
        counters=counters,
    )
