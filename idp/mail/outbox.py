"""Queue mail in the caller's transaction; ``idp.mail.delivery`` sends it after the commit."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from idp.clock import Clock
from idp.db import DbSession
from idp.mail.models import OutboundEmail, new_message_id


class Outbox:
    def __init__(self, session: DbSession, *, clock: Clock, message_domain: str = "localhost") -> None:
        self.session = session
        self.clock = clock
        # The right-hand side of Message-IDs: the sender's domain (idp.mail.delivery.message_domain).
        self.message_domain = message_domain

    def queue(
        self,
        *,
        to: str,
        subject: str,
        body: str,
        purpose: str,
        account_id: str | None = None,
        html: str | None = None,
    ) -> OutboundEmail:
        """Add a message to the outbox; it is sent only if the caller's transaction commits."""
        now = self.clock.now()
        message = OutboundEmail(
            account_id=account_id,
            purpose=purpose,
            to_address=to,
            subject=subject[:200],
            body_text=body,
            body_html=html,
            created_at=now,
            next_attempt_at=now,
            attempts=0,
            message_id=new_message_id(self.message_domain),
        )
        self.session.add(message)
        self.session.flush()
        return message

    def queued_since(self, account_id: str, purpose: str, window: timedelta) -> int:
        """Return how many messages of ``purpose`` were queued for the account within ``window``."""
        since = self.clock.now() - window
        return int(
            self.session.execute(
                select(func.count())
                .select_from(OutboundEmail)
                .where(
                    OutboundEmail.account_id == account_id,
                    OutboundEmail.purpose == purpose,
                    OutboundEmail.created_at >= since,
                )
            ).scalar_one()
        )
