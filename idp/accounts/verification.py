"""Email verification: a signed link per address, mailed through the outbox.

The link is an itsdangerous value salted for this purpose alone, carrying the account id and a
digest of the address it was sent to, so that it dies when the address changes (STYLE 9).
"""

from __future__ import annotations

import hashlib
from contextlib import suppress
from datetime import timedelta
from typing import Any, Protocol

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner
from sqlalchemy import select

from idp.accounts.models import Account, AccountStatus
from idp.accounts.usernames import MAX_USERNAME_LENGTH, username_key
from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession
from idp.mail.compose import MessageComposer
from idp.mail.outbox import Outbox

SALT = "idp.email-verification"
LINK_LIFE = timedelta(days=3)
# At most this many verification mails per account within RESEND_WINDOW.
RESEND_LIMIT = 3
RESEND_WINDOW = timedelta(hours=1)


class LinkBuilder(Protocol):
    def __call__(self, token: str) -> str: ...


class InvalidVerificationLink(Exception):
    """Tampered, for another address, or for an account that no longer exists."""


class VerificationLinkExpired(Exception):
    pass


class TooManyVerificationMails(Exception):
    pass


def _email_digest(email: str) -> str:
    return hashlib.sha256(email.strip().casefold().encode("utf-8", "surrogatepass")).hexdigest()[:32]


class EmailVerification:
    def __init__(
        self,
        session: DbSession,
        *,
        secret_key: str,
        clock: Clock,
        outbox: Outbox,
        composer: MessageComposer,
        link: LinkBuilder,
    ) -> None:
        self.session = session
        self.clock = clock
        self.outbox = outbox
        self.composer = composer
        self.link = link
        clock_ = clock

        class _ClockSigner(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(clock_.now().timestamp())

        self._serializer = URLSafeTimedSerializer(secret_key, salt=SALT, signer=_ClockSigner)

    def token_for(self, account: Account) -> str:
        return str(self._serializer.dumps([account.id, _email_digest(account.email)]))

    def send(
        self, account: Account, *, limit: bool = False, actor: str | None = None, after_change: bool = False
    ) -> bool:
        """Queue a verification link to the account's address; return False if none is sent.

        ``actor``: the staff member or client who asked for it (the console's resend), audited.
        """
        if account.is_test_account or account.email_verified_at is not None:
            return False
        if (
            limit
            and self.outbox.queued_since(account.id, "email_verification", RESEND_WINDOW) >= RESEND_LIMIT
        ):
            raise TooManyVerificationMails()
        composed = self.composer.compose(
            "email_verification",
            account,
            link=self.link(self.token_for(account)),
            days=LINK_LIFE.days,
            # A changed address is not a new account: the closing line says what to do if it was not you.
            after_change=after_change,
        )
        self.outbox.queue(
            to=account.email,
            subject=composed.subject,
            body=composed.text,
            html=composed.html,
            purpose="email_verification",
            account_id=account.id,
        )
        audited: dict[str, Any] = {"actor": actor} if actor is not None else {}
        audit(self.session, "email_verification.sent", account_id=account.id, **audited)
        return True

    def resend_to(self, username: str) -> None:
        """Queue a new link for the account named ``username``, if it may have one; tell nothing."""
        account = None
        # NUL is in no username, and PostgreSQL refuses it in a query parameter.
        if username and len(username) <= MAX_USERNAME_LENGTH * 4 and "\x00" not in username:
            account = self.session.execute(
                select(Account).where(Account.username_key == username_key(username))
            ).scalar_one_or_none()
        if account is not None and account.status is not AccountStatus.DISABLED:
            with suppress(TooManyVerificationMails):
                self.send(account, limit=True)
        self.session.commit()

    def verify(self, token: str) -> Account:
        """Mark the address the link was sent to as verified, and a pending account as confirmed."""
        if len(token) > 1000:
            raise InvalidVerificationLink()
        try:
            account_id, digest = self._serializer.loads(token, max_age=int(LINK_LIFE.total_seconds()))
        except SignatureExpired:
            raise VerificationLinkExpired() from None
        except (BadSignature, ValueError, TypeError):
            raise InvalidVerificationLink() from None
        account = self.session.get(Account, str(account_id))
        if account is None or digest != _email_digest(account.email):
            raise InvalidVerificationLink()
        if account.email_verified_at is None:
            account.email_verified_at = self.clock.now()
            audit(self.session, "email.verified", account_id=account.id)
        if account.status is AccountStatus.PENDING:
            account.status = AccountStatus.CONFIRMED
            audit(self.session, "account.confirmed", account_id=account.id)
        self.session.commit()
        return account
