"""Server-side sessions: rows in the portal's database, found by the SHA-256 of the cookie's id.

Every worker reads the same rows, so a back-channel logout received by one worker ends the
session for all of them, and an idle session times out the same everywhere.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from relying_party_demo.clock import Clock
from relying_party_demo.models import ReceivedLogoutToken, StoredSession
from relying_party_demo.tokens import LogoutRequestClaims, LogoutTokenReplayed

# How long a browser may take at the provider between "Sign In" and the callback (registering
# an account included); Authlib's pending state expires after the same hour.
PENDING_LIFE = timedelta(hours=1)
MAX_ID_LENGTH = 128


def hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def new_session_id() -> str:
    """256 random bits; the prefix makes a leaked cookie recognisable."""
    return "rps_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Identity:
    """Who signed in, from a verified ID token."""

    sub: str
    sid: str | None
    id_token: str
    claims: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Loaded:
    """What a cookie led to: an active row, or nothing (``timed_out`` tells why)."""

    row: StoredSession | None
    timed_out: bool = False

    @property
    def identity(self) -> Identity | None:
        row = self.row
        if row is None or row.account_sub is None or row.id_token is None:
            return None
        return Identity(row.account_sub, row.op_sid, row.id_token, dict(row.claims or {}))


class SessionStore:
    def __init__(self, db: Session, *, clock: Clock, idle: timedelta) -> None:
        self.db = db
        self.clock = clock
        self.idle = idle

    def load(self, session_id: str | None) -> Loaded:
        """Return the active session of ``session_id``; an idle one is deleted and reported."""
        if not session_id or len(session_id) > MAX_ID_LENGTH:
            return Loaded(None)
        row = self.db.get(StoredSession, hash_session_id(session_id))
        if row is None:
            return Loaded(None)
        now = self.clock.now()
        signed_in = row.account_sub is not None
        life = self.idle if signed_in else max(self.idle, PENDING_LIFE)
        if now - row.last_seen_at >= life:
            self.db.delete(row)
            self.db.commit()
            # Only a signed-in session "signs out"; a stale pending sign-in just starts over.
            return Loaded(None, timed_out=signed_in)
        return Loaded(row)

    def create(self, data: dict[str, Any], identity: Identity | None) -> tuple[str, StoredSession]:
        """Store a new session; return the id for the cookie (only its hash is kept)."""
        session_id = new_session_id()
        now = self.clock.now()
        row = StoredSession(id_hash=hash_session_id(session_id), data=data, created_at=now, last_seen_at=now)
        self._set_identity(row, identity, now)
        self.db.add(row)
        self.db.commit()
        return session_id, row

    def save(self, row: StoredSession, data: dict[str, Any], identity: Identity | None) -> None:
        now = self.clock.now()
        row.data = data
        self._set_identity(row, identity, now)
        row.last_seen_at = now
        # The row may come from another database session (loaded when the request began).
        self.db.merge(row)
        self.db.commit()

    def touch(self, row: StoredSession) -> None:
        """Record a request: only this column, so concurrent requests never undo each other's data."""
        self.db.execute(
            update(StoredSession)
            .where(StoredSession.id_hash == row.id_hash)
            .values(last_seen_at=self.clock.now())
        )
        self.db.commit()

    def delete(self, row: StoredSession) -> None:
        self.db.execute(delete(StoredSession).where(StoredSession.id_hash == row.id_hash))
        self.db.commit()

    def end_for_logout(self, logout: LogoutRequestClaims) -> int:
        """Delete the sessions a logout token names; return how many there were.

        OIDC Back-Channel Logout 1.0 2.4: with ``sid``, that OP session (and, with ``sub`` too,
        only if it is that user's); with ``sub`` alone, every session of the user. The token's
        ``jti`` is recorded in the same transaction: a second delivery raises
        ``LogoutTokenReplayed`` and ends nothing, so a captured token cannot end a later session.
        """
        try:
            self.db.execute(
                insert(ReceivedLogoutToken).values(
                    jti_hash=hashlib.sha256(logout.jti.encode()).hexdigest(),
                    usable_until=logout.usable_until,
                )
            )
        except IntegrityError:
            self.db.rollback()
            raise LogoutTokenReplayed() from None
        ended = self._delete_sessions(sid=logout.sid, sub=logout.sub)
        self.db.commit()
        return ended

    def _delete_sessions(self, *, sid: str | None, sub: str | None) -> int:
        if sid is None and sub is None:
            return 0
        query = delete(StoredSession)
        if sid is not None:
            query = query.where(StoredSession.op_sid == sid)
        if sub is not None:
            query = query.where(StoredSession.account_sub == sub)
        return cast(CursorResult[Any], self.db.execute(query)).rowcount

    def prune(self) -> int:
        """Delete sessions idle for longer than any of them may live; return how many.

        Logout tokens past their usable time go too: the verifier refuses them by then.
        """
        now = self.clock.now()
        self.db.execute(delete(ReceivedLogoutToken).where(ReceivedLogoutToken.usable_until < now))
        query = delete(StoredSession).where(
            or_(
                StoredSession.last_seen_at <= now - max(self.idle, PENDING_LIFE),
                (StoredSession.account_sub.is_not(None)) & (StoredSession.last_seen_at <= now - self.idle),
            )
        )
        pruned = cast(CursorResult[Any], self.db.execute(query)).rowcount
        self.db.commit()
        return pruned

    def count_for(self, sub: str) -> int:
        rows = self.db.execute(select(StoredSession.id_hash).where(StoredSession.account_sub == sub))
        return len(rows.all())

    @staticmethod
    def _set_identity(row: StoredSession, identity: Identity | None, now: datetime) -> None:
        if identity is None:
            row.account_sub = row.op_sid = row.id_token = row.claims = row.signed_in_at = None
            return
        if row.account_sub != identity.sub or row.signed_in_at is None:
            row.signed_in_at = now
        row.account_sub, row.op_sid = identity.sub, identity.sid
        row.id_token, row.claims = identity.id_token, identity.claims
