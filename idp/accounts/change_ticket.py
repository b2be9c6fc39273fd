"""The browser's ticket to "Change Your Password", between a sign-in and its forced change.

A right password that is temporary or expired does not open a session. The browser gets this
ticket instead: the account id, a digest of the password hash it was issued for (so it dies with
the change, STYLE 9), the reason, and the authorization request to continue, signed for this
purpose alone and good for a quarter of an hour.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer

from idp.accounts.models import Account
from idp.accounts.password_policy import ChangeReason
from idp.db import DbSession

SALT = "idp.password-change"
LIFE = timedelta(minutes=15)
MAX_TICKET_CHARS = 1000


@dataclass(frozen=True)
class ChangeTicket:
    account: Account
    reason: ChangeReason
    request_id: str | None


def _digest(account: Account) -> str:
    return hashlib.sha256(account.password_hash.encode()).hexdigest()[:32]


class ChangeTickets:
    def __init__(self, session: DbSession, *, secret_key: str) -> None:
        self.session = session
        self._serializer = URLSafeTimedSerializer(secret_key, salt=SALT)

    def issue(self, account: Account, reason: ChangeReason, request_id: str | None) -> str:
        return str(self._serializer.dumps([account.id, _digest(account), reason.value, request_id or ""]))

    def read(self, value: str | None) -> ChangeTicket | None:
        """Return the ticket if it is genuine, fresh, and its password still the account's."""
        if not value or len(value) > MAX_TICKET_CHARS:
            return None
        try:
            account_id, digest, reason, request_id = self._serializer.loads(
                value, max_age=int(LIFE.total_seconds())
            )
            account = self.session.get(Account, str(account_id))
            chosen_reason = ChangeReason(reason)
        except (BadSignature, ValueError, TypeError):
            return None
        if account is None or not hmac.compare_digest(str(digest), _digest(account)):
            return None
        return ChangeTicket(account, chosen_reason, str(request_id) or None)
