"""OP sessions: created at sign-in, found by the cookie's hash, ended by timeouts or sign-out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from idp.accounts.models import Account, OPSession
from idp.clock import Clock
from idp.db import DbSession
from idp.policy import SessionPolicy
from idp.tokens import new_secret, secret_hash

# Writing last_seen_at on every request would make every page a write; a minute is precise enough.
TOUCH_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True)
class StartedSession:
    cookie_value: str
    row: OPSession


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
    ) -> StartedSession:
        """Open a new session; callers end the browser's previous one (id rotation at sign-in)."""
        now = self.clock.now()
        cookie_value = new_secret("ses")
        row = OPSession(
            token_hash=secret_hash(cookie_value),
            account=account,
            auth_time=auth_time or now,
            created_at=now,
            last_seen_at=now,
            ip_address=ip_address,
            user_agent=(user_agent or "")[:512] or None,
        )
        self.session.add(row)
        return StartedSession(cookie_value, row)

    def find(self, cookie_value: str | None) -> OPSession | None:
        """Return the live session behind ``cookie_value``, ending it if it has timed out."""
        if not cookie_value or len(cookie_value) > 100:
            return None
        row = self.session.execute(
            select(OPSession).where(OPSession.token_hash == secret_hash(cookie_value))
        ).scalar_one_or_none()
        if row is None:
            return None
        now = self.clock.now()
        if now - row.last_seen_at > self.policy.idle or now - row.created_at > self.policy.absolute:
            self.session.delete(row)
            return None
        if now - row.last_seen_at > TOUCH_INTERVAL:
            row.last_seen_at = now
        return row

    def end(self, cookie_value: str | None) -> None:
        if cookie_value:
            self.session.execute(delete(OPSession).where(OPSession.token_hash == secret_hash(cookie_value)))
