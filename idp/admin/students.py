"""The student profile of the console: a student and the portal accounts linked to it (no HTTP).

``StudentProfiles.student_profile(actor, sis_id) -> StudentProfile`` needs ``Permission.VIEW``;
a student outside the actor's schools, or an unknown id, raises ``OutOfReach`` (a 404). The last
login date is the account's current sign-in (the seed: "pulls from the Current Login Date").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from idp.accounts.lockout import Lockout
from idp.accounts.models import Account, AccountType
from idp.admin.accounts import AccountState, account_state, clean_id, is_locked
from idp.admin.actor import Actor, OutOfReach
from idp.admin.roles import Permission
from idp.clock import Clock
from idp.db import DbSession
from idp.students.models import GuardianLink, School, Student


@dataclass(frozen=True)
class LinkedAccount:
    id: str
    type: AccountType
    username: str
    email: str
    first_name: str
    last_name: str
    relationship: str
    state: AccountState
    is_test: bool
    last_login_at: datetime | None


@dataclass(frozen=True)
class StudentProfile:
    sis_id: str
    first_name: str
    last_name: str
    grade: str | None
    school_code: str
    school_name: str
    active: bool
    accounts: list[LinkedAccount]


class StudentProfiles:
    def __init__(self, session: DbSession, *, clock: Clock, lockout: Lockout) -> None:
        self.session = session
        self.clock = clock
        self.lockout = lockout

    def student_profile(self, actor: Actor, sis_id: str) -> StudentProfile:
        """Return the student ``sis_id`` and its linked accounts, if the actor reaches the student."""
        actor.require(Permission.VIEW)
        wanted = clean_id(sis_id)
        found = (
            self.session.execute(
                select(Student, School)
                .join(School, School.id == Student.school_id)
                .where(Student.sis_id == wanted, actor.reaches_students())
            ).first()
            if wanted is not None
            else None
        )
        if found is None:
            raise OutOfReach(sis_id)
        student, school = found
        now = self.clock.now()
        rows = self.session.execute(
            select(Account, GuardianLink.relationship)
            .join(GuardianLink, GuardianLink.account_id == Account.id)
            .where(GuardianLink.student_id == student.id)
            .order_by(Account.type, Account.last_name, Account.first_name, Account.id)
        ).all()
        profile = StudentProfile(
            sis_id=student.sis_id,
            first_name=student.first_name,
            last_name=student.last_name,
            grade=student.grade,
            school_code=school.code,
            school_name=school.name,
            active=student.active,
            accounts=[
                LinkedAccount(
                    id=account.id,
                    type=account.type,
                    username=account.username,
                    email=account.email,
                    first_name=account.first_name,
                    last_name=account.last_name,
                    relationship=relationship,
                    state=account_state(account, now=now, locked=is_locked(self.lockout, account)),
                    is_test=account.is_test_account,
                    last_login_at=account.current_login_at,
                )
                for account, relationship in rows
            ],
        )
        self.session.commit()
        return profile
