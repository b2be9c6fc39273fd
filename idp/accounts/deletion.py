"""Deleting an account for good: one service for staff (``idp.admin.accounts``) and the holder
(``idp.accounts.own_data``), so that both leave the same things behind.

What goes: the account row, and with it (ON DELETE CASCADE) its guardian links, sessions, consents,
codes and refresh-token families (revoked first, so that a token in flight is refused at once).
What stays: audit events and outbox rows, unlinked (their foreign keys are SET NULL), and the
tombstone ``account.deleted``, which names the account id, its type, who acted, the reason and the
counts, and nothing personal (no name, address or username).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select

from idp.accounts.administration import TellPortals
from idp.accounts.models import Account
from idp.accounts.sessions import SessionService
from idp.audit import audit
from idp.db import DbSession
from idp.mail.notifications import Notifier
from idp.students.models import GuardianLink

# (account id, reason) -> revoke every refresh-token family of the account; return how many.
RevokeAccountGrants = Callable[[str, str], int]


@dataclass(frozen=True)
class Deleted:
    """What went with a deleted account (its tombstone says the same)."""

    account_id: str
    ended_sessions: int
    revoked_grants: int
    unlinked_students: int
    notified: bool


class AccountDeletion:
    def __init__(
        self,
        session: DbSession,
        *,
        notifier: Notifier,
        sessions: SessionService,
        revoke_grants: RevokeAccountGrants,
        tell_portals: TellPortals,
        district_name: str,
    ) -> None:
        self.session = session
        self.notifier = notifier
        self.sessions = sessions
        self.revoke_grants = revoke_grants
        self.tell_portals = tell_portals
        self.district_name = district_name

    def delete(self, account: Account, *, actor: str, reason: str, by_holder: bool = False) -> Deleted:
        """Mail the holder, sign the account out everywhere, revoke its tokens, delete it; commit.

        ``by_holder``: the holder deleted it (Account Preferences), and the mail says so. The mail
        is queued before the row goes; the outbox row keeps no link to the account.
        """
        notified = self.notifier.send(
            account, "account_deleted", district_name=self.district_name, by_holder=by_holder
        )
        ended = self.sessions.end_all(account.id)
        revoked = self.revoke_grants(account.id, "account_deleted")
        unlinked = int(
            self.session.execute(
                select(func.count()).select_from(GuardianLink).where(GuardianLink.account_id == account.id)
            ).scalar_one()
        )
        deleted = Deleted(account.id, len(ended), revoked, unlinked, notified)
        # account_id stays empty: the column would be SET NULL with the row anyway.
        audit(
            self.session,
            "account.deleted",
            actor=actor,
            deleted_account_id=account.id,
            account_type=account.type.value,
            reason=reason,
            ended_sessions=deleted.ended_sessions,
            revoked_grants=deleted.revoked_grants,
            unlinked_students=deleted.unlinked_students,
            was_test_account=account.is_test_account,
        )
        self.session.delete(account)
        self.session.commit()
        # After the commit: a portal told too early could refresh from rows not yet gone.
        self.tell_portals(ended)
        return deleted
