"""School, Student and GuardianLink rows."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, UniqueConstraint, orm
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, bool_true, id_pk, utc_now


class School(Base):
    __tablename__ = "school"

    id: Mapped[id_pk]
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
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
    # argon2id: Access Passwords are short and chosen by people.
    access_password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool_true]
    created_at: Mapped[utc_now]

    school: Mapped[School] = orm.relationship()


class GuardianLink(Base):
    __tablename__ = "guardian_link"
    __table_args__ = (UniqueConstraint("account_id", "student_id"),)

    id: Mapped[id_pk]
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    student_id: Mapped[str] = mapped_column(ForeignKey("student.id", ondelete="CASCADE"), index=True)
    relationship: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[utc_now]

    student: Mapped[Student] = orm.relationship()
