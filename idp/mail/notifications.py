"""Tell an account holder what happened to their account, through the outbox."""

from __future__ import annotations

from typing import Any

from idp.db import DbSession
from idp.mail.compose import MessageComposer, Recipient
from idp.mail.outbox import Outbox


class Notifier:
    """Compose a message in the holder's language and queue it in the caller's transaction."""

    def __init__(self, session: DbSession, *, outbox: Outbox, composer: MessageComposer) -> None:
        self.session = session
        self.outbox = outbox
        self.composer = composer

    def send(
        self,
        account: Recipient,
        kind: str,
        *,
        to: str | None = None,
        purpose: str | None = None,
        **values: Any,
    ) -> bool:
        """Queue message ``kind`` to ``to`` (default: the account's address); return whether it was."""
        # Test accounts send no mail (DESIGN: Data).
        if account.is_test_account:
            return False
        composed = self.composer.compose(kind, account, **values)
        self.outbox.queue(
            to=to or account.email,
            subject=composed.subject,
            body=composed.text,
            html=composed.html,
            purpose=purpose or kind,
            account_id=account.id,
        )
        return True
