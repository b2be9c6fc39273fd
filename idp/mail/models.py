"""The transactional outbox: mail is a row written in the transaction that causes it."""

from __future__ import annotations

from email.utils import make_msgid

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, id_pk, utc_now, utc_time, utc_time_or_none


def new_message_id(domain: str = "localhost") -> str:
    """A Message-ID (RFC 5322 3.6.4), made once when a message is queued."""
    return make_msgid(domain=domain)


class OutboundEmail(Base):
    __tablename__ = "outbound_email"
    __table_args__ = (Index("ix_outbound_email_due", "sent_at", "next_attempt_at"),)

    id: Mapped[id_pk]
    account_id: Mapped[str | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"), index=True)
    # What the message is for ("email_verification", "email_changed", …): resend limits read it.
    purpose: Mapped[str] = mapped_column(String(32))
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    # Both bodies are erased once the message is sent or given up (idp.mail.delivery.erase_body).
    body_text: Mapped[str] = mapped_column(Text)
    # The same words as HTML, sent as a multipart/alternative beside the plain text.
    body_html: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[utc_now]
    next_attempt_at: Mapped[utc_time]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[utc_time_or_none]
    last_error: Mapped[str | None] = mapped_column(String(500))
    # Made when the message is queued and sent with every attempt, so that a receiver recognises
    # a copy (RFC 5322 3.6.4); angle brackets included.
    # The outbox (idp.mail.outbox) gives the sender's domain; rows made otherwise get localhost.
    message_id: Mapped[str] = mapped_column(String(255), unique=True, default=new_message_id)
    # A worker takes a message by writing these in one short transaction, and talks SMTP with no
    # transaction open; another worker leaves the message alone until ``leased_until``
    # (idp.mail.delivery). The lease outlasts the longest SMTP conversation.
    leased_until: Mapped[utc_time_or_none]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
