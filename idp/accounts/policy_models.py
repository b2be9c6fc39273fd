"""Rows behind the password rules and the district's options: policies, history, options."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, bool_false, bool_true, id_pk, utc_now


class PasswordPolicyRecord(Base):
    """A school's password rules, or the district default (``school_id`` empty)."""

    __tablename__ = "password_policy"

    id: Mapped[id_pk]
    school_id: Mapped[str | None] = mapped_column(
        ForeignKey("school.id", ondelete="CASCADE"), unique=True, nullable=True
    )
    min_length: Mapped[int] = mapped_column(Integer)
    require_upper_lower: Mapped[bool_false]
    require_letter_number: Mapped[bool_false]
    require_special: Mapped[bool_false]
    history_count: Mapped[int] = mapped_column(Integer, default=0)
    max_age_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    block_common: Mapped[bool_true]
    block_context: Mapped[bool_true]
    updated_at: Mapped[utc_now]


class PasswordHistory(Base):
    """A password an account used before (argon2id), kept to refuse its reuse."""

    __tablename__ = "password_history"

    id: Mapped[id_pk]
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # When the password stopped being the account's current one.
    replaced_at: Mapped[utc_now]


class DistrictOption(Base):
    """One district option set by staff; an absent row means the environment's default."""

    __tablename__ = "district_option"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[utc_now]
