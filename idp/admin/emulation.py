"""Emulating a parent: a staff member's OP session as a parent or student account, with a reason,
an end time, a notice mail and an audit trail; no credential can be changed in it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from idp.accounts.models import Account, OPSession
from idp.accounts.sessions import Emulated, EndedSession, SessionService, StartedSession
from idp.admin.actor import Actor, NotPermitted, OutOfReach
from idp.admin.roles import Permission
from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession
from idp.mail.notifications import Notifier
from idp.tokens import secret_hash

MAX_REASON_LENGTH = 200
# (account id, sid, reason) -> revoke the refresh-token families granted in that OP session; how many.
RevokeSessionGrants = Callable[[str, str, str], int]
# Tells the portals of ended sessions that they ended (``BackchannelLogout.tell``).
TellPortals = Callable[[Sequence[EndedSession]], None]


class ReasonRefused(ValueError):
    """The reason is missing, longer than 200 characters, or holds characters that cannot be shown."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem  # "missing", "too_long" or "unprintable"


class AccountNotAvailable(Exception):
    """The account is disabled or past its expiry: a session as it would be refused at once."""


@dataclass(frozen=True)
class EndedEmulation:
    account_id: str
    staff_id: str


def check_reason(reason: str) -> str:
    """Return ``reason`` trimmed, or raise ``ReasonRefused``."""
    reason = reason.strip()
    if not reason:
        raise ReasonRefused("missing")
    if len(reason) > MAX_REASON_LENGTH:
        raise ReasonRefused("too_long")
    if not reason.isprintable():
        raise ReasonRefused("unprintable")
    return reason


class Emulation:
    def __init__(
        self,
        session: DbSession,
        *,
        clock: Clock,
        sessions: SessionService,
        notifier: Notifier,
        life: timedelta,
        revoke_session_grants: RevokeSessionGrants,
        tell_portals: TellPortals,
    ) -> None:
        self.session = session
        self.clock = clock
        self.sessions = sessions
        self.notifier = notifier
        self.life = life
        self.revoke_session_grants = revoke_session_grants
        self.tell_portals = tell_portals

    def start(
        self,
        actor: Actor,
        account_id: str,
        reason: str,
        *,
        staff_session_ip: str | None,
        user_agent: str | None,
        replacing: str | None = None,
    ) -> StartedSession:
        """Open an OP session as the account for the actor, tell the holder, audit it; commit once.

        ``replacing`` is the browser's OP session cookie, ended in the same transaction. It is not
        a sign-in: the account's login count and last sign-in stay as they were.
        """
        actor.require(Permission.EMULATE)
        if actor.staff_id is None:
            raise NotPermitted(Permission.EMULATE)  # only a person at a browser emulates
        if len(account_id) > 64 or "\x00" in account_id:
            raise OutOfReach(account_id[:64])
        account = self.session.execute(
            select(Account).where(Account.id == account_id, actor.reaches_accounts())
        ).scalar_one_or_none()
        if account is None:
            raise OutOfReach(account_id)
        reason = check_reason(reason)
        now = self.clock.now()
        if not account.is_available(now):
            raise AccountNotAvailable(account.id)
        staff = self.session.get(Account, actor.staff_id)
        ends_at = now + self.life
        ended = self._end_replaced(replacing)
        started = self.sessions.start(
            account,
            ip_address=staff_session_ip,
            user_agent=user_agent,
            emulation=Emulated(actor.staff_id, reason, ends_at),
        )
        audit(
            self.session,
            "emulation.started",
            account_id=account.id,
            ip_address=staff_session_ip,
            actor=actor.label,
            reason=reason,
            sid=started.sid,
            ends_at=ends_at.isoformat(),
        )
        self.notifier.send(
            account,
            "emulation_started",
            staff_name=staff.display_name if staff is not None else actor.label,
            reason=reason,
            started_at=now,
            ends_at=ends_at,
        )
        self.session.commit()
        self.tell_portals(ended)
        return started

    def end(self, cookie_value: str | None) -> EndedEmulation | None:
        """Sign out the emulated session behind ``cookie_value`` and revoke what was granted in it.

        None when the cookie names no emulated session (a parent's own session is left alone).
        Works after the emulation's end too: a session past its end still has its row to end.
        """
        emulated = self._emulated_row(cookie_value)
        if emulated is None:
            return None
        result = EndedEmulation(emulated.account_id, emulated.emulated_by or "")
        ended = self._end(cookie_value, emulated)
        self.session.commit()
        self.tell_portals([ended] if ended else [])
        return result

    def _emulated_row(self, cookie_value: str | None) -> OPSession | None:
        if not cookie_value or len(cookie_value) > 100:
            return None
        return self.session.execute(
            select(OPSession).where(
                OPSession.token_hash == secret_hash(cookie_value), OPSession.emulated_by.is_not(None)
            )
        ).scalar_one_or_none()

    def _end(self, cookie_value: str | None, emulated: OPSession) -> EndedSession | None:
        account_id, staff_id, sid = emulated.account_id, emulated.emulated_by, emulated.sid
        ended = self.sessions.end(cookie_value)
        # Tokens that say a staff member acted must not outlive the emulation.
        revoked = self.revoke_session_grants(account_id, sid, "emulation_ended")
        audit(
            self.session,
            "emulation.ended",
            account_id=account_id,
            actor=f"staff:{staff_id}",
            sid=sid,
            revoked_grants=revoked,
        )
        return ended

    def _end_replaced(self, cookie_value: str | None) -> list[EndedSession]:
        emulated = self._emulated_row(cookie_value)
        if emulated is not None:
            ended = self._end(cookie_value, emulated)
        else:
            ended = self.sessions.end(cookie_value)
            if ended is not None:
                audit(self.session, "op_session.ended", account_id=ended.account_id, sid=ended.sid)
        return [ended] if ended is not None and ended.client_ids else []
