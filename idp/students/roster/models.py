"""Roster guardians (people, not accounts), their students, and the invitations mailed to them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.db import Base, id_pk, sha256_hex, utc_now, utc_time, utc_time_or_none
from idp.students.models import Student
from idp.students.relationships import N_

# OneRoster's guardian roles and the relationship label a link made from them carries.
ROSTER_RELATIONSHIPS: dict[str, str] = {
    "parent": N_("Parent"),
    "guardian": N_("Guardian"),
    "relative": N_("Relative"),
}
SOURCED_ID_LIMIT = 255
LANGUAGE_LIMIT = 16


class RosterGuardian(Base):
    """A parent, guardian or relative as the roster names them: no account, no credential."""

    __tablename__ = "roster_guardian"

    id: Mapped[id_pk]
    sourced_id: Mapped[str] = mapped_column(String(SOURCED_ID_LIMIT), unique=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))
    # A BCP 47 tag (``es``, ``pt-BR``) when the roster gives one.
    language: Mapped[str | None] = mapped_column(String(LANGUAGE_LIMIT))
    # parent | guardian | relative: the OneRoster role (ROSTER_RELATIONSHIPS).
    role: Mapped[str] = mapped_column(String(16))
    # The account that accepted this guardian's invitation: a later removal unlinks it.
    account_id: Mapped[str | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[utc_now]
    updated_at: Mapped[utc_now]

    @property
    def relationship(self) -> str:
        return ROSTER_RELATIONSHIPS[self.role]


class RosterGuardianStudent(Base):
    """One guardian's relation to one student, as the roster's ``agentSourcedIds`` say."""

    __tablename__ = "roster_guardian_student"

    guardian_id: Mapped[str] = mapped_column(
        ForeignKey("roster_guardian.id", ondelete="CASCADE"), primary_key=True
    )
    student_id: Mapped[str] = mapped_column(
        ForeignKey("student.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[utc_now]

    student: Mapped[Student] = relationship()


class GuardianInvitation(Base):
    """The one live invitation of a roster guardian: a new one replaces it (the old link dies)."""

    __tablename__ = "guardian_invitation"

    id: Mapped[id_pk]
    guardian_id: Mapped[str] = mapped_column(
        ForeignKey("roster_guardian.id", ondelete="CASCADE"), unique=True
    )
    # SHA-256 of the link's token; the token itself is only in the mail.
    token_hash: Mapped[sha256_hex] = mapped_column(unique=True)
    created_at: Mapped[utc_now]
    expires_at: Mapped[utc_time]
    used_at: Mapped[utc_time_or_none]
    account_id: Mapped[str | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"))

    guardian: Mapped[RosterGuardian] = relationship()
    students: Mapped[list[GuardianInvitationStudent]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


class GuardianInvitationStudent(Base):
    """A student an invitation links: those named when it was sent."""

    __tablename__ = "guardian_invitation_student"

    invitation_id: Mapped[str] = mapped_column(
        ForeignKey("guardian_invitation.id", ondelete="CASCADE"), primary_key=True
    )
    student_id: Mapped[str] = mapped_column(
        ForeignKey("student.id", ondelete="CASCADE"), primary_key=True, index=True
    )

    student: Mapped[Student] = relationship()
