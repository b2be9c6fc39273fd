"""Schools as data: a code portals know, a name people read, a time zone and an address."""

from __future__ import annotations

from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from sqlalchemy import select

from idp.audit import audit
from idp.db import DbSession
from idp.students.models import School, Student

CODE_LIMIT = 32
NAME_LIMIT = 200
TIMEZONE_LIMIT = 64
ADDRESS_LIMIT = 500


class SchoolRefused(ValueError):
    """A value breaks a rule (the message says which); nothing was written."""


class SchoolExists(SchoolRefused):
    """A school with that code is already on record."""


class NoSuchSchool(LookupError):
    """No school has that code."""


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def check_timezone(value: str) -> str:
    """Return ``value`` if it names an IANA time zone (``America/Chicago``); else raise ``SchoolRefused``."""
    name = value.strip()
    # The names the tz database lists: ZoneInfo alone would also open some other files under it.
    if name not in _zone_names():
        raise SchoolRefused(f"the time zone must be an IANA name such as America/Chicago (got {value!r})")
    return name


def _check_code(value: str) -> str:
    code = value.strip()
    if not code or len(code) > CODE_LIMIT or any(ch.isspace() or not ch.isprintable() for ch in code):
        raise SchoolRefused(f"the school code must be 1 to {CODE_LIMIT} characters without spaces")
    return code


def _check_text(label: str, value: str, limit: int) -> str:
    text = " ".join(value.split())
    if not text or len(text) > limit or not text.isprintable():
        raise SchoolRefused(f"the {label} must be 1 to {limit} printable characters")
    return text


def _check_address(value: str) -> str:
    # Lines are kept: an address prints on several.
    lines = [" ".join(line.split()) for line in value.strip().splitlines()]
    address = "\n".join(line for line in lines if line)
    if len(address) > ADDRESS_LIMIT or not all(line.isprintable() for line in address.splitlines()):
        raise SchoolRefused(f"the address must be at most {ADDRESS_LIMIT} printable characters")
    return address


class SchoolService:
    def __init__(self, session: DbSession, *, district_timezone: str) -> None:
        self.session = session
        self.district_timezone = district_timezone

    def find(self, code: str) -> School | None:
        return self.session.execute(select(School).where(School.code == code.strip())).scalar_one_or_none()

    def get(self, code: str) -> School:
        school = self.find(code)
        if school is None:
            raise NoSuchSchool(code)
        return school

    def active_students(self, code: str) -> list[Student]:
        """Return the school's active students, as letters are ordered: by last name, first name, id."""
        school = self.get(code)
        return list(
            self.session.execute(
                select(Student)
                .where(Student.school_id == school.id, Student.active.is_(True))
                .order_by(Student.last_name, Student.first_name, Student.sis_id)
            ).scalars()
        )

    def all(self) -> list[School]:
        return list(self.session.execute(select(School).order_by(School.code)).scalars())

    def zone(self, school: School) -> ZoneInfo:
        """Return the school's time zone, the district's when it has none of its own."""
        return ZoneInfo(school.timezone or self.district_timezone)

    def create(
        self,
        *,
        code: str,
        name: str,
        timezone: str | None = None,
        address: str | None = None,
        actor: str | None = None,
    ) -> School:
        """Add a school; ``SchoolExists`` if the code is taken, ``SchoolRefused`` for a bad value."""
        school = School(
            code=_check_code(code),
            name=_check_text("name", name, NAME_LIMIT),
            timezone=check_timezone(timezone) if timezone else None,
            address=(_check_address(address) or None) if address else None,
        )
        if self.find(school.code) is not None:
            raise SchoolExists(f"a school with code {school.code!r} already exists")
        self.session.add(school)
        self.session.flush()
        audit(
            self.session,
            "school.created",
            school=school.code,
            name=school.name,
            timezone=school.timezone,
            address=school.address,
            actor=actor,
        )
        return school

    def update(
        self,
        code: str,
        *,
        name: str | None = None,
        timezone: str | None = None,
        address: str | None = None,
        actor: str | None = None,
    ) -> School:
        """Change what is given; an empty time zone or address clears it. Audited if anything changed."""
        school = self.get(code)
        wanted: dict[str, Any] = {}
        if name is not None:
            wanted["name"] = _check_text("name", name, NAME_LIMIT)
        if timezone is not None:
            wanted["timezone"] = check_timezone(timezone) if timezone.strip() else None
        if address is not None:
            wanted["address"] = _check_address(address) or None
        changes = {field: value for field, value in wanted.items() if getattr(school, field) != value}
        if not changes:
            return school
        for field, value in changes.items():
            setattr(school, field, value)
        self.session.flush()
        audit(self.session, "school.updated", school=school.code, changes=changes, actor=actor)
        return school
