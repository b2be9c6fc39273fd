"""OP sessions: created at sign-in, found by the cookie's hash, ended by timeouts or sign-out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import joinedload

from idp.accounts.models import Account, OPSession, SessionClient
from idp.clock import Clock
from idp.db import DbSession, new_id
from idp.policy import SessionPolicy
from idp.tokens import new_secret, secret_hash

# Writing last_seen_at on every request would make every page a write; a minute is precise enough.
TOUCH_INTERVAL = timedelta(seconds=60)
# How far back the worker looks for accounts that expired (it runs every few seconds).
EXPIRY_SWEEP = timedelta(days=1)


# Written with Core INSERTs: a session starts on every sign-in (bench/signin_vs_argon2.py).
_INSERT_SESSION = insert(cast(Table, OPSession.__table__))
_INSERT_SESSION_CLIENT = insert(cast(Table, SessionClient.__table__))


@dataclass(frozen=True)
class StartedSession:
    cookie_value: str
    id: str
    sid: str


@dataclass(frozen=True)
class Emulated:
    """A session held by staff member ``staff_id`` as the account, for ``reason``, until ``ends_at``."""

    staff_id: str
    reason: str
    ends_at: datetime


@dataclass(frozen=True)
class EndedSession:
    """A session that is gone, and the portals that signed in through it (to be told so)."""

    sid: str
    account_id: str
    client_ids: tuple[str, ...]
    # Ended by its idle or absolute timeout: a sign-in after it starts afresh instead of continuing it.
    timed_out: bool = False


class SessionService:
    def __init__(self, session: DbSession, *, clock: Clock, policy: SessionPolicy) -> None:
        self.session = session
        self.clock = clock
        self.policy = policy

    def start(
        self,
        account: Account,
        *,
        ip_address: str | None,
        user_agent: str | None,
        auth_time: datetime | None = None,
        continues: EndedSession | None = None,
        emulation: Emulated | None = None,
    ) -> StartedSession:
        """Open a new session; callers end the browser's previous one (id rotation at sign-in).

        When the ended session ``continues`` was this account's, the new one keeps its ``sid`` and
        its portals: signing in again (prompt=login, max_age) is the same session, fresher.
        ``emulation`` makes it a staff member's session as the account (idp.admin.emulation).
        """
        now = self.clock.now()
        cookie_value = new_secret("ses")
        continued = continues if continues is not None and continues.account_id == account.id else None
        started = StartedSession(cookie_value, new_id(), continued.sid if continued else new_id())
        self.session.execute(
            _INSERT_SESSION,
            {
                "id": started.id,
                "token_hash": secret_hash(cookie_value),
                "account_id": account.id,
                "auth_time": auth_time or now,
                "created_at": now,
                "last_seen_at": now,
                "ip_address": ip_address,
                "user_agent": (user_agent or "")[:512] or None,
                "sid": started.sid,
                "emulated_by": emulation.staff_id if emulation else None,
                "emulation_reason": emulation.reason if emulation else None,
                "emulation_ends_at": emulation.ends_at if emulation else None,
            },
        )
        if continued is not None and continued.client_ids:
            self.session.execute(
                _INSERT_SESSION_CLIENT,
                [
                    {"id": new_id(), "op_session_id": started.id, "client_id": client_id, "created_at": now}
                    for client_id in continued.client_ids
                ],
            )
        return started

    def _timed_out(
        self, last_seen_at: datetime, created_at: datetime, now: datetime, ends_at: datetime | None = None
    ) -> bool:
        # ``ends_at``: an emulation's end, whatever the idle and absolute timeouts say.
        return (
            now - last_seen_at > self.policy.idle
            or now - created_at > self.policy.absolute
            or (ends_at is not None and now >= ends_at)
        )

    def find(self, cookie_value: str | None) -> OPSession | None:
        """Return the live session behind ``cookie_value``; a timed-out one is not live (nor an
        emulation past its end), nor one of an account that is disabled or past its expiry.

        Such a row is left for the worker (``end_timed_out``, ``end_expired``), which tells its
        portals. Seeing the session again moves its last-seen time, at most once a minute
        (committed at once).
        """
        if not cookie_value or len(cookie_value) > 100:
            return None
        row = self.session.execute(
            select(OPSession)
            .options(joinedload(OPSession.account))
            .where(OPSession.token_hash == secret_hash(cookie_value))
        ).scalar_one_or_none()
        if row is None:
            return None
        now = self.clock.now()
        timed_out = self._timed_out(row.last_seen_at, row.created_at, now, row.emulation_ends_at)
        if timed_out or not row.account.is_available(now):
            return None
        if now - row.last_seen_at > TOUCH_INTERVAL:
            row.last_seen_at = now
            self.session.commit()
        return row

    def end(self, cookie_value: str | None) -> EndedSession | None:
        """End the session behind ``cookie_value``; return it and its portals, if there was one."""
        if not cookie_value or len(cookie_value) > 100:
            return None
        row = self.session.execute(
            select(
                OPSession.id,
                OPSession.sid,
                OPSession.account_id,
                OPSession.last_seen_at,
                OPSession.created_at,
                OPSession.emulation_ends_at,
            ).where(OPSession.token_hash == secret_hash(cookie_value))
        ).first()
        if row is None:
            return None
        ended = self._ending(
            row.id,
            row.sid,
            row.account_id,
            timed_out=self._timed_out(
                row.last_seen_at, row.created_at, self.clock.now(), row.emulation_ends_at
            ),
        )
        self.session.execute(delete(OPSession).where(OPSession.id == row.id))
        return ended

    def end_timed_out(self, limit: int = 500) -> list[EndedSession]:
        """End up to ``limit`` sessions past their idle or absolute timeout, or emulations past their
        end; return them for their portals."""
        now = self.clock.now()
        rows = self.session.execute(
            select(OPSession.id, OPSession.sid, OPSession.account_id)
            .where(
                (OPSession.last_seen_at < now - self.policy.idle)
                | (OPSession.created_at < now - self.policy.absolute)
                | (OPSession.emulation_ends_at <= now)
            )
            .order_by(OPSession.last_seen_at)
            .limit(limit)
            # Another worker ending sessions right now keeps its own: each is ended (and its
            # portals told) once. SQLite has one writer at a time anyway.
            .with_for_update(skip_locked=True)
        ).all()
        ended = [self._ending(row.id, row.sid, row.account_id, timed_out=True) for row in rows]
        if rows:
            self.session.execute(delete(OPSession).where(OPSession.id.in_([row.id for row in rows])))
        return ended

    def end_expired(self, *, within: timedelta = EXPIRY_SWEEP, limit: int = 500) -> list[EndedSession]:
        """End up to ``limit`` sessions of accounts whose expiry came in the last ``within``; return them.

        Through the index on ``account.expires_at``: the accounts that expired long ago were swept
        then (and a session of theirs is refused at use anyway, ``find``).
        """
        now = self.clock.now()
        rows = self.session.execute(
            select(OPSession.id, OPSession.sid, OPSession.account_id)
            .join(Account, Account.id == OPSession.account_id)
            .where(Account.expires_at <= now, Account.expires_at > now - within)
            .limit(limit)
            .with_for_update(skip_locked=True, of=OPSession)
        ).all()
        ended = [self._ending(row.id, row.sid, row.account_id) for row in rows]
        if rows:
            self.session.execute(delete(OPSession).where(OPSession.id.in_([row.id for row in rows])))
        return ended

    def end_all(self, account_id: str, *, keep: str | None = None) -> list[EndedSession]:
        """End every session of the account but ``keep`` (an OP session id); return them for their portals."""
        statement = select(OPSession.id, OPSession.sid).where(OPSession.account_id == account_id)
        if keep is not None:
            statement = statement.where(OPSession.id != keep)
        rows = self.session.execute(statement).all()
        ended = [self._ending(row.id, row.sid, account_id) for row in rows]
        if rows:
            self.session.execute(delete(OPSession).where(OPSession.id.in_([row.id for row in rows])))
        return ended

    def end_ids(self, account_id: str, op_session_ids: Sequence[str]) -> list[EndedSession]:
        """End the listed sessions of the account (ids of another account's are ignored); return them."""
        if not op_session_ids:
            return []
        rows = self.session.execute(
            select(OPSession.id, OPSession.sid).where(
                OPSession.account_id == account_id, OPSession.id.in_(list(op_session_ids))
            )
        ).all()
        ended = [self._ending(row.id, row.sid, account_id) for row in rows]
        if rows:
            self.session.execute(delete(OPSession).where(OPSession.id.in_([row.id for row in rows])))
        return ended

    def _ending(
        self, op_session_id: str, sid: str, account_id: str, *, timed_out: bool = False
    ) -> EndedSession:
        client_ids = self.session.execute(
            select(SessionClient.client_id)
            .where(SessionClient.op_session_id == op_session_id)
            .order_by(SessionClient.created_at)
        ).scalars()
        return EndedSession(sid, account_id, tuple(client_ids), timed_out)

    def remember_client(self, op_session_id: str, client_id: str) -> None:
        """Record that ``client_id`` signed in through this session (once per pair, race-free)."""
        dialect = self.session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        self.session.execute(
            insert(SessionClient)
            .values(
                id=new_id(), op_session_id=op_session_id, client_id=client_id, created_at=self.clock.now()
            )
            .on_conflict_do_nothing()
        )
