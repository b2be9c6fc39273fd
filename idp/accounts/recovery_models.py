"""Rows of "Having trouble signing in?": what visitors asked for, and the tokens mailed to them."""

from __future__ import annotations

import enum

from sqlalchemy import Enum, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, id_pk, sha256_hex, utc_now, utc_time, utc_time_or_none


class RecoveryPurpose(enum.StrEnum):
    PASSWORD = "password"  # noqa: S105 (a purpose, not a secret)
    USERNAME = "username"


_PURPOSE = Enum(RecoveryPurpose, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


class RecoveryRequest(Base):
    """What a visitor typed on the trouble page, waiting for the worker.

    The page writes one of these whoever asks, and the worker decides whether anyone is to be
    written to: the request does the same work, and so takes the same time, either way.
    The row is deleted once the worker has looked at it.
    """

    __tablename__ = "recovery_request"
    __table_args__ = (Index("ix_recovery_request_created_at", "created_at"),)

    id: Mapped[id_pk]
    purpose: Mapped[RecoveryPurpose] = mapped_column(_PURPOSE)
    username: Mapped[str | None] = mapped_column(String(256))
    email: Mapped[str] = mapped_column(String(254))
    # The authorization request the visitor was signing in for: the reset continues it.
    authorization_request_id: Mapped[str | None] = mapped_column(String(32))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[utc_now]


class RecoveryToken(Base):
    """A password-recovery link's secret; only its SHA-256 is kept (STYLE 7, 9).

    Single use (``used_at``), with an expiry, and refused once the password changed after it was made.
    """

    __tablename__ = "recovery_token"

    id: Mapped[id_pk]
    token_hash: Mapped[sha256_hex] = mapped_column(unique=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[RecoveryPurpose] = mapped_column(_PURPOSE)
    authorization_request_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[utc_now]
    expires_at: Mapped[utc_time]
    used_at: Mapped[utc_time_or_none]
