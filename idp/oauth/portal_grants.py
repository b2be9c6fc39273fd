"""What a parent's portals hold, for Account Preferences: the portals each browser signed in to,
and the consents given. The accounts package asks through these (``OwnData``) without knowing
the OAuth tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select

from idp.accounts.models import SessionClient
from idp.db import DbSession
from idp.oauth.models import Client, Consent


class PortalGrants:
    def __init__(self, session: DbSession) -> None:
        self.session = session

    def portals_by_session(self, op_session_ids: Sequence[str]) -> dict[str, list[str]]:
        """Return, for each OP session, the names of the portals signed in through it, in order."""
        found: dict[str, list[str]] = {op_session_id: [] for op_session_id in op_session_ids}
        if not found:
            return found
        for op_session_id, portal in self.session.execute(
            select(SessionClient.op_session_id, Client.name)
            .join(Client, Client.client_id == SessionClient.client_id)
            .where(SessionClient.op_session_id.in_(list(found)))
            .order_by(SessionClient.created_at)
        ):
            found[op_session_id].append(portal)
        return found

    def consents(self, account_id: str) -> list[tuple[str, str, str, datetime]]:
        """Return the account's consents as (portal name, client id, scope, granted at), oldest first."""
        rows = self.session.execute(
            select(Client.name, Consent.client_id, Consent.scope, Consent.granted_at)
            .join(Client, Client.client_id == Consent.client_id)
            .where(Consent.account_id == account_id)
            .order_by(Consent.granted_at, Consent.id)
        ).all()
        return [(name, client_id, scope, granted_at) for name, client_id, scope, granted_at in rows]
