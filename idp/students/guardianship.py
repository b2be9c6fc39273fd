"""Students and the links between them and the accounts of their guardians."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update

from idp.accounts.models import Account, AccountType
from idp.accounts.passwords import PasswordHasher
from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession
from idp.students.models import GuardianLink, School, Student
from idp.students.relationships import DEFAULT_RELATIONSHIPS, SELF, canonical_relationship


@dataclass(frozen=True)
class LinkedStudent:
    """A student linked to an account, as the claims name it."""

    student_id: str
    sis_id: str
    first_name: str
    last_name: str
    school_code: str
    relationship: str
    school_name: str


class StudentExists(ValueError):
    """A student with that school-system id or Access ID is already on record."""


class UnknownStudent(LookupError):
    pass


class AccessSpent(Exception):
    """Another guardian spent this single-use Access Password since it was checked."""


class GuardianshipService:
    def __init__(
        self,
        session: DbSession,
        *,
        hasher: PasswordHasher,
        clock: Clock,
        single_use: Callable[[], bool],
    ) -> None:
        self.session = session
        self.hasher = hasher
        self.clock = clock
        # The district's option "Access Passwords are single-use".
        self.single_use = single_use

    def school(self, code: str, name: str | None = None) -> School:
        """Return the school with ``code``, creating it when unknown."""
        school = self.session.execute(select(School).where(School.code == code)).scalar_one_or_none()
        if school is None:
            school = School(code=code, name=name or code)
            self.session.add(school)
            self.session.flush()
        return school

    def create_student(
        self,
        *,
        sis_id: str,
        first_name: str,
        last_name: str,
        school_code: str,
        access_id: str,
        access_password: str,
        grade: str | None = None,
    ) -> Student:
        clash = (
            self.session.execute(
                select(Student).where((Student.sis_id == sis_id) | (Student.access_id == access_id))
            )
            .scalars()
            .first()
        )  # the id and the Access ID may each belong to a different student
        if clash is not None:
            which = "id" if clash.sis_id == sis_id else "Access ID"
            raise StudentExists(f"a student with that {which} already exists")
        student = Student(
            sis_id=sis_id,
            first_name=first_name,
            last_name=last_name,
            school=self.school(school_code),
            grade=grade,
            access_id=access_id,
            access_password_hash=self.hasher.hash(access_password),
        )
        self.session.add(student)
        self.session.flush()
        audit(self.session, "student.created", student_id=sis_id)
        return student

    def student_by_sis_id(self, sis_id: str) -> Student:
        student = self.session.execute(select(Student).where(Student.sis_id == sis_id)).scalar_one_or_none()
        if student is None:
            raise UnknownStudent(sis_id)
        return student

    def link(
        self,
        account: Account,
        student: Student,
        relationship: str,
        *,
        allowed: tuple[str, ...] = DEFAULT_RELATIONSHIPS,
    ) -> GuardianLink:
        """Link ``student`` to ``account``; the first linked student becomes the primary one."""
        label = SELF if account.type is AccountType.STUDENT else canonical_relationship(relationship, allowed)
        link = self.session.execute(
            select(GuardianLink).where(
                GuardianLink.account_id == account.id, GuardianLink.student_id == student.id
            )
        ).scalar_one_or_none()
        if link is None:
            link = GuardianLink(account_id=account.id, student=student, relationship=label)
            self.session.add(link)
        if account.primary_student_id is None:
            account.primary_student_id = student.id
        self.session.flush()
        audit(
            self.session,
            "guardian_link.created",
            account_id=account.id,
            student_id=student.sis_id,
            relationship=label,
        )
        return link

    def link_by_access(
        self,
        account: Account,
        student: Student,
        relationship: str,
        *,
        allowed: tuple[str, ...] = DEFAULT_RELATIONSHIPS,
    ) -> GuardianLink:
        """Link ``student`` whose Access Password was just checked; a single-use one is spent.

        Raises ``AccessSpent`` when a concurrent link spent it first (nothing is linked then).
        """
        if self.single_use():
            # One conditional update: of two guardians racing with one letter, one wins.
            spent = self.session.execute(
                update(Student)
                .where(Student.id == student.id, Student.access_password_used_at.is_(None))
                .values(access_password_used_at=self.clock.now())
                .execution_options(synchronize_session=False)
            )
            if spent.rowcount != 1:  # type: ignore[attr-defined]
                raise AccessSpent(student.sis_id)
            self.session.refresh(student, ["access_password_used_at"])
            audit(self.session, "student.access_spent", account_id=account.id, student_id=student.sis_id)
        return self.link(account, student, relationship, allowed=allowed)

    def set_primary(self, account: Account, student_id: str) -> Student:
        """Make one of the account's linked students (by row id) its primary one."""
        student = self.session.execute(
            select(Student)
            .join(GuardianLink, GuardianLink.student_id == Student.id)
            .where(
                GuardianLink.account_id == account.id,
                GuardianLink.status == "active",
                Student.id == student_id,
            )
        ).scalar_one_or_none()
        if student is None:
            raise UnknownStudent(student_id)
        account.primary_student_id = student.id
        self.session.flush()
        audit(self.session, "primary_student.changed", account_id=account.id, student_id=student.sis_id)
        return student

    def linked_students(self, account: Account) -> list[tuple[Student, str]]:
        """Return the account's students with their relationship, ordered as portals show tabs."""
        rows = self.session.execute(
            select(Student, GuardianLink.relationship)
            .join(GuardianLink, GuardianLink.student_id == Student.id)
            .where(GuardianLink.account_id == account.id, GuardianLink.status == "active")
            .order_by(Student.first_name, Student.last_name, Student.sis_id)
        ).all()
        return [(student, relationship) for student, relationship in rows]

    def linked_student_records(self, account_id: str) -> list[LinkedStudent]:
        """Return what the claims say of the account's students, in the same order."""
        rows = self.session.execute(
            select(
                Student.id,
                Student.sis_id,
                Student.first_name,
                Student.last_name,
                School.code,
                GuardianLink.relationship,
                School.name,
            )
            .join(GuardianLink, GuardianLink.student_id == Student.id)
            .join(School, School.id == Student.school_id)
            .where(GuardianLink.account_id == account_id, GuardianLink.status == "active")
            .order_by(Student.first_name, Student.last_name, Student.sis_id)
        )
        return [LinkedStudent(*row) for row in rows]
