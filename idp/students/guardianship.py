"""Students and the links between them and the accounts of their guardians."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, FromClause, Table, and_, bindparam, select

from idp.accounts.models import Account, AccountType
from idp.accounts.passwords import PasswordHasher
from idp.audit import audit
from idp.db import DbSession
from idp.students.models import GuardianLink, School, Student
from idp.students.relationships import DEFAULT_RELATIONSHIPS, SELF, canonical_relationship

_STUDENT = cast(Table, Student.__table__)
_LINK = cast(Table, GuardianLink.__table__)
_SCHOOL = cast(Table, School.__table__)


@dataclass(frozen=True)
class LinkedStudent:
    """A student linked to an account, as the claims name it (read with Core, no entity)."""

    student_id: str
    sis_id: str
    first_name: str
    last_name: str
    school_code: str
    relationship: str


# The columns, join and order of an account's linked students, shared by the claims' own query
# and by the token endpoint's code look-up, which fetches them in the same statement.
LINKED_STUDENT_COLUMNS = (
    _STUDENT.c.id.label("student_id"),
    _STUDENT.c.sis_id.label("student_sis_id"),
    _STUDENT.c.first_name.label("student_first_name"),
    _STUDENT.c.last_name.label("student_last_name"),
    _SCHOOL.c.code.label("student_school_code"),
    _LINK.c.relationship.label("student_relationship"),
)
LINKED_STUDENT_ORDER = (_STUDENT.c.first_name, _STUDENT.c.last_name, _STUDENT.c.sis_id)
LINKED_STUDENTS: FromClause = _LINK.join(_STUDENT, _STUDENT.c.id == _LINK.c.student_id).join(
    _SCHOOL, _SCHOOL.c.id == _STUDENT.c.school_id
)


def active_links_of(account_id: ColumnElement[Any]) -> ColumnElement[bool]:
    return and_(_LINK.c.account_id == account_id, _LINK.c.status == "active")


_LINKED_STUDENTS_OF = (
    select(*LINKED_STUDENT_COLUMNS)
    .select_from(LINKED_STUDENTS)
    .where(active_links_of(bindparam("account_id")))
    .order_by(*LINKED_STUDENT_ORDER)
)


def linked_student_from(row: Any) -> LinkedStudent | None:
    """The linked student of a row carrying ``LINKED_STUDENT_COLUMNS`` (None for an outer join's miss)."""
    if row.student_id is None:
        return None
    return LinkedStudent(
        row.student_id,
        row.student_sis_id,
        row.student_first_name,
        row.student_last_name,
        row.student_school_code,
        row.student_relationship,
    )


class StudentExists(ValueError):
    """A student with that school-system id or Access ID is already on record."""


class UnknownStudent(LookupError):
    pass


class GuardianshipService:
    def __init__(self, session: DbSession, *, hasher: PasswordHasher) -> None:
        self.session = session
        self.hasher = hasher

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
        """Return what the claims say of the account's students, in the same order, without entities."""
        # A Core statement does not autoflush: links added in this transaction must be seen too.
        self.session.flush()
        rows = self.session.execute(_LINKED_STUDENTS_OF, {"account_id": account_id})
        return [student for row in rows if (student := linked_student_from(row)) is not None]
