"""Access IDs and Access Passwords that the district issues, readable on a printed letter."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select

from idp.accounts.passwords import PasswordHasher
from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession
from idp.students.models import Student

# Upper case and digits without 0/O, 1/I and L: read aloud or copied from paper without doubt.
ACCESS_ID_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
# Lower case (easy on a phone's keyboard) and digits without 0/o, 1/l and i: 31 symbols.
ACCESS_PASSWORD_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # noqa: S105 (an alphabet, not a secret)
ACCESS_ID_GROUPS = 2
ACCESS_ID_GROUP_LENGTH = 4
ACCESS_PASSWORD_LENGTH = 12
# An Access ID already taken is drawn again; eight draws in a row only fail with a full space.
ACCESS_ID_DRAWS = 8


def new_access_id() -> str:
    """Return a random readable Access ID such as ``K7QX-M4PD`` (31^8, about 39.6 bits).

    Access IDs are not secret (the Access Password is); the space is large enough that a new one
    rarely meets a taken one, and the caller retries on the unique index when it does.
    """
    groups = (
        "".join(secrets.choice(ACCESS_ID_ALPHABET) for _ in range(ACCESS_ID_GROUP_LENGTH))
        for _ in range(ACCESS_ID_GROUPS)
    )
    return "-".join(groups)


def new_access_password() -> str:
    """Return a random Access Password of 12 characters from 31 symbols: 59.4 bits.

    The throttle lets an Access ID be tried ``IDP_ACCESS_ID_FAILURES`` (5) times every
    ``IDP_ACCESS_ID_PAUSE_SECONDS`` (900 s): 480 guesses a day, about 1.75 million in ten years.
    Against every one of 100,000 students at once that is 2^37.3 guesses for 2^59.4 passwords
    each, a chance of success of about one in four million.
    """
    return "".join(secrets.choice(ACCESS_PASSWORD_ALPHABET) for _ in range(ACCESS_PASSWORD_LENGTH))


@dataclass(frozen=True)
class IssuedAccess:
    """A student's credentials as issued: shown once (a letter, the terminal), never stored in clear."""

    student_id: str
    sis_id: str
    access_id: str
    access_password: str


class AccessIdsExhausted(RuntimeError):
    """No free Access ID was found in ``ACCESS_ID_DRAWS`` draws."""


class AccessIssuer:
    def __init__(self, session: DbSession, *, hasher: PasswordHasher, clock: Clock) -> None:
        self.session = session
        self.hasher = hasher
        self.clock = clock

    def issue(self, student: Student, *, new_id: bool = False, actor: str | None = None) -> IssuedAccess:
        """Give ``student`` a fresh Access Password (the old one stops working), and an Access ID if none."""
        if new_id or not student.access_id:
            student.access_id = self._free_access_id()
        password = new_access_password()
        student.access_password_hash = self.hasher.hash(password)
        # A fresh password has not been used, whatever the district's single-use option says.
        student.access_password_used_at = None
        self.session.flush()
        audit(
            self.session,
            "student.access_issued",
            at=self.clock.now(),
            student_id=student.sis_id,
            access_id=student.access_id,
            new_id=new_id,
            actor=actor,
        )
        return IssuedAccess(
            student_id=student.id,
            sis_id=student.sis_id,
            access_id=student.access_id,
            access_password=password,
        )

    def assign_access_id(self, student: Student) -> str:
        """Return ``student``'s Access ID, drawing one if none (a roster's new student gets no password)."""
        if not student.access_id:
            student.access_id = self._free_access_id()
        return student.access_id

    def _free_access_id(self) -> str:
        # Not flushed first: a bulk import's pending rows are left to the unique index.
        with self.session.no_autoflush:
            for _ in range(ACCESS_ID_DRAWS):
                candidate = new_access_id()
                taken = self.session.execute(select(Student.id).where(Student.access_id == candidate)).first()
                if taken is None:
                    return candidate
        raise AccessIdsExhausted(f"no free Access ID in {ACCESS_ID_DRAWS} draws")
