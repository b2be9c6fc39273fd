"""Account and OP session rows."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.db import Base, bool_false, id_pk, new_id, sha256_hex, utc_now, utc_time, utc_time_or_none


class AccountType(enum.StrEnum):
    PARENT = "parent"
    STUDENT = "student"
    STAFF = "staff"


class AccountStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    DISABLED = "disabled"


class Account(Base):
    __tablename__ = "account"

    id: Mapped[id_pk]
    type: Mapped[AccountType] = mapped_column(
        Enum(
            AccountType,
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    username: Mapped[str] = mapped_column(String(64))
    # NFKC + case-folded form; uniqueness is decided here, not on the display form.
    username_key: Mapped[str] = mapped_column(String(64), unique=True)
    # UTS #39 confusable skeleton (idp.accounts.skeleton): no two accounts' usernames look alike.
    username_skeleton: Mapped[str] = mapped_column(String(255), unique=True)
    # Found by lower(email) (sign-in by address, forgot username): indexed so, below the class.
    email: Mapped[str] = mapped_column(String(254))
    # Set when the holder follows the emailed link; cleared when the address changes.
    email_verified_at: Mapped[utc_time_or_none]
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    # "argon2id", or the legacy scheme of an imported hash (idp.accounts.legacy_hashes) until the
    # first sign-in upgrades it; the salt of an imported salted digest waits beside it.
    password_scheme: Mapped[str] = mapped_column(String(32), default="argon2id")
    legacy_salt: Mapped[str | None] = mapped_column(String(255))
    # Set when ``idp accounts import`` created the account: only such accounts does a re-import update.
    imported_at: Mapped[utc_time_or_none]
    # Empty means the password was never chosen by its holder: it must be changed.
    password_changed_at: Mapped[utc_time_or_none]
    must_change_password: Mapped[bool_false]
    # A temporary password (set by staff) stops working at this time; empty for one's own password.
    temporary_password_expires_at: Mapped[utc_time_or_none]
    status: Mapped[AccountStatus] = mapped_column(
        Enum(
            AccountStatus,
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        ),
        default=AccountStatus.CONFIRMED,
    )
    # What staff gave as the reason when they disabled the account (``idp accounts disable``).
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    primary_student_id: Mapped[str | None] = mapped_column(ForeignKey("student.id", ondelete="SET NULL"))
    login_count: Mapped[int] = mapped_column(Integer, default=0)
    last_login_at: Mapped[utc_time_or_none]
    last_login_ip: Mapped[str | None] = mapped_column(String(64))
    current_login_at: Mapped[utc_time_or_none]
    current_login_ip: Mapped[str | None] = mapped_column(String(64))
    # The browser and system of those sign-ins ("Firefox (Windows)"), never the user agent itself.
    last_login_device: Mapped[str | None] = mapped_column(String(64))
    current_login_device: Mapped[str | None] = mapped_column(String(64))
    last_seen_at: Mapped[utc_time_or_none]
    created_at: Mapped[utc_now]
    expires_at: Mapped[utc_time_or_none] = mapped_column(index=True)
    is_test_account: Mapped[bool_false]
    locale: Mapped[str | None] = mapped_column(String(16))

    sessions: Mapped[list[OPSession]] = relationship(
        back_populates="account",
        cascade="all, delete-orphan",
        passive_deletes=True,
        foreign_keys="OPSession.account_id",
    )

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def has_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def temporary_password_expired(self, now: datetime) -> bool:
        expires_at = self.temporary_password_expires_at
        return self.must_change_password and expires_at is not None and expires_at <= now

    def is_available(self, now: datetime) -> bool:
        """Whether the account may be used at ``now``: neither disabled nor past its expiry."""
        return self.status is not AccountStatus.DISABLED and not self.has_expired(now)


Index("ix_account_email_lower", func.lower(Account.email))


class OPSession(Base):
    """A browser's sign-in at the provider; the cookie holds a secret whose hash is the key."""

    __tablename__ = "op_session"

    id: Mapped[id_pk]
    token_hash: Mapped[sha256_hex] = mapped_column(unique=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    auth_time: Mapped[utc_time]
    created_at: Mapped[utc_now]
    last_seen_at: Mapped[utc_time]
    ip_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    # The ``sid`` claim of ID and logout tokens (OIDC Back-Channel Logout 1.0). Public, unlike the
    # cookie; kept when the same account signs in again in this browser, so portals keep matching it.
    sid: Mapped[str] = mapped_column(String(32), default=new_id)
    # Set when a staff member holds this session as the account (emulation): who, why, until when.
    emulated_by: Mapped[str | None] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    emulation_reason: Mapped[str | None] = mapped_column(String(200))
    emulation_ends_at: Mapped[utc_time_or_none]

    account: Mapped[Account] = relationship(back_populates="sessions", foreign_keys=[account_id])


class SessionClient(Base):
    """A portal that was given a code through this OP session: it hears of the session's end."""

    __tablename__ = "session_client"
    __table_args__ = (UniqueConstraint("op_session_id", "client_id"),)

    id: Mapped[id_pk]
    op_session_id: Mapped[str] = mapped_column(ForeignKey("op_session.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(ForeignKey("oauth_client.client_id", ondelete="CASCADE"))
    created_at: Mapped[utc_now]
