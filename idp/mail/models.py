"""The transactional outbox: mail is a row written in the transaction that causes it."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, id_pk, utc_now, utc_time, utc_time_or_none


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
