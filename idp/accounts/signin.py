"""A sign-in from the password to the new session, and the sessions it ends; no HTTP.

Three ways end in a signed-in browser: the sign-in page, the forced password change that a
temporary or expired password leads to, and a password reset. Each ends with ``complete``: the
sign-in is recorded, the browser's previous session is ended and a new one started (a new id:
no session fixation), all in one transaction; the portals of the sessions that ended hear of it
after the commit (Back-Channel Logout 1.0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from idp.accounts.district import DistrictOptionsService
from idp.accounts.lockout import LockedOut
from idp.accounts.models import Account, AccountStatus
from idp.accounts.preferences import PreferencesService
from idp.accounts.service import (
    AccountDisabled,
    AccountExpired,
    AccountService,
    InvalidCredentials,
    PasswordChangeRequired,
    SignInContext,
    TemporaryPasswordExpired,
)
from idp.accounts.sessions import EndedSession, SessionService
from idp.audit import audit
from idp.db import DbSession

# Tells the portals of ended sessions that they ended (``BackchannelLogout.tell``).
TellPortals = Callable[[Sequence[EndedSession]], None]


class EmailNotVerified(Exception):
    """The district keeps accounts out until their address is verified, and this one's is not."""


# What a sign-in may end in instead of a session; each is audited.
REFUSALS = (
    InvalidCredentials,
    LockedOut,
    AccountDisabled,
    AccountExpired,
    TemporaryPasswordExpired,
    PasswordChangeRequired,
    EmailNotVerified,
)


@dataclass(frozen=True)
class SignedIn:
    account: Account
    # The new session's cookie value.
    session_cookie: str


class SignInService:
    def __init__(
        self,
        session: DbSession,
        *,
        accounts: AccountService,
        sessions: SessionService,
        options: DistrictOptionsService,
        preferences: Callable[[], PreferencesService],
        tell_portals: TellPortals,
    ) -> None:
        self.session = session
        self.accounts = accounts
        self.sessions = sessions
        self.options = options
        self.preferences = preferences
        self.tell_portals = tell_portals

    def sign_in(
        self, username: str, password: str, context: SignInContext, *, browser_session: str | None
    ) -> SignedIn:
        """Sign in with a password; raise why not (``InvalidCredentials``, ``LockedOut`` …).

        A refusal is audited, and the audit event committed, before the exception leaves.
        """
        try:
            account = self.accounts.authenticate(username, password, context)
            if account.status is AccountStatus.PENDING and self.options.current().require_email_verification:
                audit(
                    self.session,
                    "signin.refused",
                    account_id=account.id,
                    reason="email_unverified",
                    **context.audited(),
                )
                raise EmailNotVerified()
        except REFUSALS:
            self.session.commit()
            raise
        return self.complete(account, context=context, browser_session=browser_session)

    def change_password(
        self,
        account: Account,
        *,
        current: str,
        new: str,
        confirm: str,
        context: SignInContext,
        browser_session: str | None,
    ) -> SignedIn:
        """The forced change of a temporary or expired password, then the sign-in it completes.

        Raises ``ChangeRefused`` or ``LockedOut`` (a wrong current password counts as a failed
        sign-in), as ``PreferencesService.change_password`` does.
        """
        # Like a reset: whoever knew the old password is signed out everywhere.
        self.preferences().change_password(
            account,
            current=current,
            new=new,
            confirm=confirm,
            context=context,
            required=True,
            sign_out_others=True,
        )
        return self.complete(account, context=context, browser_session=browser_session)

    def complete(
        self,
        account: Account,
        *,
        context: SignInContext,
        browser_session: str | None,
        ended_elsewhere: Sequence[EndedSession] = (),
    ) -> SignedIn:
        """Record the sign-in and give the browser a new session; tell the portals what ended.

        ``ended_elsewhere``: sessions the caller ended (a password reset ends them all).
        Signing in again as the same account continues the browser's live session (same sid,
        same portals); another account's session, or one that timed out, ends here.
        """
        self.accounts.record_signin(account, context)
        ended = self.sessions.end(browser_session)
        continues = ended if ended is not None and not ended.timed_out else None
        started = self.sessions.start(
            account, ip_address=context.ip_address, user_agent=context.user_agent, continues=continues
        )
        self.session.commit()
        gone = [*ended_elsewhere]
        if ended is not None and (ended.account_id != account.id or ended.timed_out):
            gone.append(ended)
        if gone:
            self.tell_portals(gone)
        return SignedIn(account, started.cookie_value)

    def sign_out(self, browser_session: str | None) -> None:
        """End the browser's session, if it has one, and tell its portals."""
        ended = self.sessions.end(browser_session)
        if ended is not None:
            audit(self.session, "op_session.ended", account_id=ended.account_id, sid=ended.sid)
        self.session.commit()
        if ended is not None:
            self.tell_portals([ended])
