"""School, Student and GuardianLink rows."""

from __future__ import annotations

from sqlalchemy import ForeignKey, ForeignKeyConstraint, Index, String, UniqueConstraint, orm
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, bool_true, id_pk, utc_now, utc_time_or_none


class School(Base):
    __tablename__ = "school"

    id: Mapped[id_pk]
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # An IANA name; none means the district's ``IDP_TIMEZONE``.
    timezone: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(500))
    # The OneRoster org's sourcedId when a roster brought it (idp.students.roster).
    sourced_id: Mapped[str | None] = mapped_column(String(255), unique=True, index=True)
    created_at: Mapped[utc_now]


class Student(Base):
    __tablename__ = "student"

    id: Mapped[id_pk]
    # The school system's id: what portals know the student by (``student_ids``).
    sis_id: Mapped[str] = mapped_column(String(64), unique=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    school_id: Mapped[str] = mapped_column(ForeignKey("school.id", ondelete="RESTRICT"), index=True)
    grade: Mapped[str | None] = mapped_column(String(16))
    access_id: Mapped[str] = mapped_column(String(64), unique=True)
    # argon2id. None until a letter or ``issue-access`` gives one (a roster's new student).
    access_password_hash: Mapped[str | None] = mapped_column(String(255))
    # When the district's single-use option spent this Access Password; a new one clears it.
    access_password_used_at: Mapped[utc_time_or_none]
    # The family's language as the roster gives it (a BCP 47 tag such as ``es``), for letters.
    home_language: Mapped[str | None] = mapped_column(String(16))
    # The OneRoster user's sourcedId when a roster brought it: re-imports find the student by it.
    sourced_id: Mapped[str | None] = mapped_column(String(255), unique=True, index=True)
    active: Mapped[bool_true]
    created_at: Mapped[utc_now]

    school: Mapped[School] = orm.relationship()


class GuardianLink(Base):
    __tablename__ = "guardian_link"
    __table_args__ = (
        UniqueConstraint("account_id", "student_id"),
        # The student's school rides along with the link, kept by the database when a student
        # moves school: a school admin's reach is then read from one index, with no join.
        ForeignKeyConstraint(
            ["student_id", "school_id"],
            ["student.id", "student.school_id"],
            ondelete="CASCADE",
            onupdate="CASCADE",
        ),
        Index("ix_guardian_link_school_id_account_id", "school_id", "account_id"),
    )

    id: Mapped[id_pk]
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    student_id: Mapped[str] = mapped_column(String(32), index=True)
    school_id: Mapped[str] = mapped_column(String(32))
    relationship: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[utc_now]

    student: Mapped[Student] = orm.relationship()
