"""Server-side sessions: rows in the portal's database, found by the SHA-256 of the cookie's id.

Every worker reads the same rows, so a back-channel logout received by one worker ends the
session for all of them, and an idle session times out the same everywhere. Requests of one
session that refresh its tokens take turns on the row's lock (``SessionStore.locked``).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from relying_party_demo.clock import Clock
from relying_party_demo.freshness import HeldTokens
from relying_party_demo.models import ReceivedLogoutToken, SessionTokens, StoredSession
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


@dataclass(frozen=True)
class LockedSession:
    """A session row read under its lock, with the tokens it holds at that moment."""

    row: StoredSession
    tokens: HeldTokens | None

    @property
    def identity(self) -> Identity | None:
        return Loaded(self.row).identity


class SessionBusy(Exception):
    """The session's lock could not be had in time (or the database did not answer)."""


class SessionStore:
    def __init__(self, db: Session, *, clock: Clock, idle: timedelta) -> None:
        self.db = db
        self.clock = clock
        self.idle = idle

    def load(self, session_id: str | None) -> Loaded:
        """Return the active session of ``session_id``; an idle one is deleted and reported."""
        if not session_id or len(session_id) > MAX_ID_LENGTH:
            return Loaded(None)
        # Read afresh: another request of this browser may have changed the row since.
        row = self.db.get(StoredSession, hash_session_id(session_id), populate_existing=True)
        if row is None:
            self.db.commit()
            return Loaded(None)
        now = self.clock.now()
        signed_in = row.account_sub is not None
        life = self.idle if signed_in else max(self.idle, PENDING_LIFE)
        if now - row.last_seen_at >= life:
            self.db.delete(row)
            self.db.commit()
            # Only a signed-in session "signs out"; a stale pending sign-in just starts over.
            return Loaded(None, timed_out=signed_in)
        # End the read: no transaction stays open while the page is made.
        self.db.commit()
        return Loaded(row)

    def create(
        self, data: dict[str, Any], identity: Identity | None, tokens: HeldTokens | None = None
    ) -> tuple[str, StoredSession]:
        """Store a new session; return the id for the cookie (only its hash is kept)."""
        session_id = new_session_id()
        now = self.clock.now()
        row = StoredSession(id_hash=hash_session_id(session_id), data=data, created_at=now, last_seen_at=now)
        self._set_identity(row, identity, now)
        self.db.add(row)
        if tokens is not None:
            self.db.flush()  # the session row first: the tokens' foreign key names it
            self.db.add(SessionTokens(session_hash=row.id_hash, tokens=tokens.dump()))
        self.db.commit()
        return session_id, row

    def save(self, row: StoredSession, data: dict[str, Any], identity: Identity | None) -> None:
        """Write the session's data; its identity only when someone else is in it now.

        The claims of the same user are written by the request that refreshed them, under the
        lock (``keep``): a request that began before that refresh must not put the old ones back.
        """
        now = self.clock.now()
        values: dict[str, Any] = {"data": data, "last_seen_at": now}
        if identity is None or identity.sub != row.account_sub or row.signed_in_at is None:
            values.update(self._identity_values(row, identity, now))
        self.db.execute(
            update(StoredSession)
            .where(StoredSession.id_hash == row.id_hash)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        self.db.commit()
        # The row object (loaded when the request began) now says what the database says.
        for name, value in values.items():
            set_committed_value(row, name, value)

    def tokens(self, row: StoredSession) -> HeldTokens | None:
        """The tokens the session holds, read without waiting for its lock."""
        stored = self.db.get(SessionTokens, row.id_hash, populate_existing=True)
        self.db.commit()
        return HeldTokens.load(stored.tokens) if stored is not None else None

    @contextmanager
    def locked(self, row: StoredSession) -> Iterator[LockedSession | None]:
        """Hold the lock of ``row`` for the block: other requests of the session wait their turn.

        The block sees the row as the request before it left it (None once it is gone) and may
        ``keep`` what it fetched; it is committed at the end of the block, rolled back on an
        error. The transaction is this block alone, and the block is bounded by its HTTP calls'
        timeouts. Raise ``SessionBusy`` when the lock cannot be had.
        """
        self.db.commit()  # whatever this request read before is not part of the turn
        try:
            locked = self._lock(row.id_hash)
        except OperationalError as error:
            self.db.rollback()
            raise SessionBusy(str(error)) from None
        try:
            yield locked
        except BaseException:
            self.db.rollback()
            raise
        self.db.commit()

    def _lock(self, id_hash: str) -> LockedSession | None:
        if self.db.get_bind().dialect.name == "sqlite":
            # SQLite has no row locks and ignores FOR UPDATE: a first write opens the transaction
            # with BEGIN IMMEDIATE (db.make_engine), whose write lock waits for the one before.
            self.db.execute(
                update(StoredSession)
                .where(StoredSession.id_hash == id_hash)
                .values(last_seen_at=self.clock.now())
                .execution_options(synchronize_session=False)
            )
        row = self.db.execute(
            select(StoredSession)
            .where(StoredSession.id_hash == id_hash)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if row is None:
            return None
        stored = self.db.get(SessionTokens, id_hash, populate_existing=True)
        return LockedSession(row, HeldTokens.load(stored.tokens) if stored is not None else None)

    def keep(self, locked: LockedSession, tokens: HeldTokens, claims: dict[str, Any] | None = None) -> None:
        """Store new ``tokens``, and the ``claims`` they read (inside ``locked``'s block)."""
        if claims is not None:
            locked.row.claims = claims
        self.db.merge(SessionTokens(session_hash=locked.row.id_hash, tokens=tokens.dump()))

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

    @classmethod
    def _set_identity(cls, row: StoredSession, identity: Identity | None, now: datetime) -> None:
        for name, value in cls._identity_values(row, identity, now).items():
            setattr(row, name, value)

    @staticmethod
    def _identity_values(row: StoredSession, identity: Identity | None, now: datetime) -> dict[str, Any]:
        if identity is None:
            return dict.fromkeys(("account_sub", "op_sid", "id_token", "claims", "signed_in_at"))
        new_person = row.account_sub != identity.sub or row.signed_in_at is None
        return {
            "account_sub": identity.sub,
            "op_sid": identity.sid,
            "id_token": identity.id_token,
            "claims": identity.claims,
            "signed_in_at": now if new_person else row.signed_in_at,
        }
