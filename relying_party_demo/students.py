"""The students a sign-in brings (the ``students`` claim) and the portal's demo records of them.

The portal holds records for the demo district's schools only (``SCHOOLS``: the school codes
``idp demo seed`` creates). A linked student of any other school has no record here, and the
portal says "Student information is not available at this time." Grades and attendance are
made up, the same every time for a given student: each number comes from the SHA-256 of the
school code, the student id and what the number is for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


def N_(message: str) -> str:
    """Mark a word for the portal's catalogue; the pages translate it when they show it."""
    return message


TERM = N_("Semester 1")


@dataclass(frozen=True)
class School:
    code: str
    name: str
    courses: tuple[str, ...]


ELEMENTARY = (
    N_("Reading"),
    N_("Writing"),
    N_("Mathematics"),
    N_("Science"),
    N_("Social Studies"),
    N_("Art"),
    N_("Music"),
    N_("Physical Education"),
)
MIDDLE = (
    N_("English Language Arts"),
    N_("Mathematics"),
    N_("Life Science"),
    N_("World History"),
    N_("Spanish I"),
    N_("Band"),
    N_("Physical Education"),
)
SCHOOLS = {
    "LES": School("LES", "Lincoln Elementary School", ELEMENTARY),
    "WMS": School("WMS", "Washington Middle School", MIDDLE),
}
# A teacher's honorific is translated when shown ("Ms." is "Sra."); the surname is a name.
HONORIFICS = (N_("Ms."), N_("Mr."))
TEACHERS = (
    "Ms. Alvarez",
    "Mr. Brooks",
    "Ms. Chen",
    "Mr. Dlamini",
    "Ms. Eriksen",
    "Mr. Fitzgerald",
    "Ms. Gupta",
    "Mr. Haddad",
    "Ms. Ibarra",
    "Mr. Jensen",
)


@dataclass(frozen=True)
class LinkedStudent:
    id: str
    given_name: str
    family_name: str
    school_id: str
    relationship: str
    # The provider's name for the school (``school_name``); empty from a provider without it.
    school_name: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.given_name} {self.family_name}".strip()


@dataclass(frozen=True)
class CourseGrade:
    course: str
    teacher: str
    percent: int

    @property
    def teacher_honorific(self) -> str:
        return self.teacher.split(" ", 1)[0]

    @property
    def teacher_surname(self) -> str:
        return self.teacher.split(" ", 1)[-1]

    @property
    def letter(self) -> str:
        for floor, letter in ((90, "A"), (80, "B"), (70, "C"), (60, "D")):
            if self.percent >= floor:
                return letter
        return "F"


@dataclass(frozen=True)
class Attendance:
    days_enrolled: int
    excused_absences: int
    unexcused_absences: int
    tardies: int

    @property
    def days_present(self) -> int:
        return self.days_enrolled - self.excused_absences - self.unexcused_absences

    @property
    def rate_percent(self) -> float:
        return round(100 * self.days_present / self.days_enrolled, 1)


@dataclass(frozen=True)
class StudentRecord:
    student: LinkedStudent
    school: School
    term: str
    grades: tuple[CourseGrade, ...]
    attendance: Attendance


def linked_students(claims: dict[str, Any]) -> list[LinkedStudent]:
    """The ``students`` claim as tabs: by first name, then last name, then id (as the provider orders)."""
    raw = claims.get("students")
    found: dict[str, LinkedStudent] = {}
    for item in raw if isinstance(raw, list) else []:
        student = _student(item)
        if student is not None:
            found.setdefault(student.id, student)
    return sorted(found.values(), key=tab_order)


def tab_order(student: LinkedStudent) -> tuple[str, str, str]:
    return (student.given_name.casefold(), student.family_name.casefold(), student.id)


def find_student(students: Iterable[LinkedStudent], student_id: str) -> LinkedStudent | None:
    return next((s for s in students if s.id == student_id), None)


def first_student(students: list[LinkedStudent], primary_id: object) -> LinkedStudent | None:
    """The student the start page shows: the account's primary student, else the first tab."""
    primary = find_student(students, primary_id) if isinstance(primary_id, str) else None
    return primary or (students[0] if students else None)


def demo_record(student: LinkedStudent) -> StudentRecord | None:
    """The made-up record of ``student``, or None for a school the portal holds nothing for."""
    school = SCHOOLS.get(student.school_id)
    if school is None:
        return None

    def draw(label: str, low: int, high: int) -> int:
        seed = f"{school.code}\x00{student.id}\x00{label}".encode()
        number = int.from_bytes(hashlib.sha256(seed).digest()[:8], "big")
        return low + number % (high - low + 1)

    grades = tuple(
        CourseGrade(course, TEACHERS[draw(f"teacher:{course}", 0, len(TEACHERS) - 1)], draw(course, 68, 99))
        for course in school.courses
    )
    attendance = Attendance(
        days_enrolled=draw("days", 58, 64),
        excused_absences=draw("excused", 0, 5),
        unexcused_absences=draw("unexcused", 0, 2),
        tardies=draw("tardies", 0, 4),
    )
    # The district's name for the school wins over the portal's own.
    named = School(school.code, student.school_name or school.name, school.courses)
    return StudentRecord(student, named, TERM, grades, attendance)


def _student(item: object) -> LinkedStudent | None:
    if not isinstance(item, dict):
        return None
    values = {name: item.get(name) for name in ("id", "given_name", "family_name", "school_id")}
    if not all(isinstance(v, str) for v in values.values()) or not values["id"]:
        return None
    relationship = item.get("relationship")
    school_name = item.get("school_name")
    return LinkedStudent(
        id=str(values["id"]),
        given_name=str(values["given_name"]),
        family_name=str(values["family_name"]),
        school_id=str(values["school_id"]),
        relationship=relationship if isinstance(relationship, str) else "",
        school_name=school_name if isinstance(school_name, str) else "",
    )
