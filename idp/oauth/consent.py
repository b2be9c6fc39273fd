"""Consent: remembered per account and client, as the scopes the account allowed it."""

from __future__ import annotations

from sqlalchemy import select

from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession
from idp.oauth.models import Consent
from idp.oauth.scopes import scope_list


class ConsentService:
    def __init__(self, session: DbSession, *, clock: Clock) -> None:
        self.session = session
        self.clock = clock

    def granted(self, account_id: str, client_id: str) -> frozenset[str] | None:
        """Return the scopes the account has allowed this client; None if it was never asked."""
        scope = self.session.execute(
            select(Consent.scope).where(Consent.account_id == account_id, Consent.client_id == client_id)
        ).scalar_one_or_none()
        return None if scope is None else frozenset(scope_list(scope))

    def record(self, account_id: str, client_id: str, scope: str | None) -> None:
        """Add ``scope`` to what the account allowed this client."""
        row = self.session.execute(
            select(Consent).where(Consent.account_id == account_id, Consent.client_id == client_id)
        ).scalar_one_or_none()
        now = self.clock.now()
        if row is None:
            row = Consent(account_id=account_id, client_id=client_id, scope="", granted_at=now)
            self.session.add(row)
        row.scope = " ".join(scope_list(f"{row.scope} {scope or ''}"))
        row.granted_at = now
        audit(self.session, "consent.granted", account_id=account_id, client_id=client_id, scope=scope)
