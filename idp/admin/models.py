"""Staff rows: role and schools, the second factor, backup codes, console sessions, reset runs."""

from __future__ import annotations

import enum

from sqlalchemy import Enum, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, id_pk, sha256_hex, utc_now, utc_time, utc_time_or_none


class StaffRole(enum.StrEnum):
    DISTRICT_ADMIN = "district-admin"
    SCHOOL_ADMIN = "school-admin"
    HELP_DESK = "help-desk"


class StaffMember(Base):
    """What makes an account of type ``staff`` staff: its role, and its second factor."""

    __tablename__ = "staff_member"

    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[StaffRole] = mapped_column(
        Enum(StaffRole, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    # The TOTP secret, AES-GCM encrypted under a key derived from the app's secret (idp.admin.totp).
    totp_secret: Mapped[str | None] = mapped_column(Text)
    # Set once a code from the authenticator confirmed enrolment; until then sign-in enrols.
    totp_confirmed_at: Mapped[utc_time_or_none]
    # The RFC 6238 time step of the last code accepted: a code is never accepted twice.
    totp_last_step: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[utc_now]


class StaffSchool(Base):
    """A school a school admin manages."""

    __tablename__ = "staff_school"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("staff_member.account_id", ondelete="CASCADE"), primary_key=True
    )
    school_id: Mapped[str] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), primary_key=True)


class BackupCode(Base):
    """One of a staff member's single-use backup codes; only its hash is kept."""

    __tablename__ = "staff_backup_code"

    id: Mapped[id_pk]
    account_id: Mapped[str] = mapped_column(
        ForeignKey("staff_member.account_id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[sha256_hex]
    used_at: Mapped[utc_time_or_none]
    created_at: Mapped[utc_now]


class StaffSession(Base):
    """A browser's console session: separate from parents' sessions, with its own cookie."""

    __tablename__ = "staff_session"

    id: Mapped[id_pk]
    token_hash: Mapped[sha256_hex] = mapped_column(unique=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[utc_now]
    last_seen_at: Mapped[utc_time]
    # When the password was last given here; the second factor's time below. Both are needed
    # before any page opens, and again for sensitive actions after a few minutes.
    password_at: Mapped[utc_time]
    second_factor_at: Mapped[utc_time_or_none]
    ip_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))


class PasswordResetRun(Base):
    """A "reset all portal account passwords" job: it walks the accounts by id, in batches, from
    ``next_account_id``, so a stopped run resumes where it was and a finished one does nothing."""

    __tablename__ = "password_reset_run"

    id: Mapped[id_pk]
    started_by: Mapped[str] = mapped_column(String(64))
    # Accounts created after this time are not touched: they chose their password since.
    cutoff: Mapped[utc_time]
    next_account_id: Mapped[str] = mapped_column(String(32), default="")
    touched: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[utc_now]
    finished_at: Mapped[utc_time_or_none]


class ClientSchool(Base):
    """A school an admin API client is limited to; a client with none has the district's reach."""

    __tablename__ = "admin_client_school"

    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_client.client_id", ondelete="CASCADE"), primary_key=True
    )
    # RESTRICT: a limited client whose schools all went would otherwise reach the whole district.
    school_id: Mapped[str] = mapped_column(ForeignKey("school.id", ondelete="RESTRICT"), primary_key=True)
