"""District admins manage staff: the list, a change of role (and schools), and a second factor reset
for someone who lost the authenticator. Each change ends the member's console sessions, so the
next page asks for a sign-in under the new terms. No HTTP."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from idp.accounts.models import Account
from idp.admin.actor import Actor, OutOfReach
from idp.admin.models import BackupCode, StaffMember, StaffRole, StaffSchool, StaffSession
from idp.admin.roles import Permission
from idp.audit import audit
from idp.db import DbSession
from idp.students.models import School


class OwnStaffAccount(ValueError):
    """A district admin may not change their own role or second factor (nobody would be left to
    undo a mistake); another district admin can."""


class StaffChangeRefused(ValueError):
    """The role and schools do not fit together, or a school code is unknown; says why."""


@dataclass(frozen=True)
class StaffListing:
    id: str
    username: str
    email: str
    first_name: str
    last_name: str
    role: StaffRole
    school_codes: tuple[str, ...]
    # The same schools as people read them, in the same order.
    school_names: tuple[str, ...]
    enrolled: bool
    last_login_at: datetime | None


class StaffManagement:
    def __init__(self, session: DbSession) -> None:
        self.session = session

    def list_staff(self, actor: Actor) -> list[StaffListing]:
        """Return every staff member, by name."""
        actor.require(Permission.MANAGE_STAFF)
        rows = self.session.execute(
            select(Account, StaffMember)
            .join(StaffMember, StaffMember.account_id == Account.id)
            .order_by(Account.last_name, Account.first_name, Account.id)
        ).all()
        schools: dict[str, list[tuple[str, str]]] = {}
        for account_id, code, name in self.session.execute(
            select(StaffSchool.account_id, School.code, School.name)
            .join(School, School.id == StaffSchool.school_id)
            .order_by(School.code)
        ):
            schools.setdefault(account_id, []).append((code, name))
        return [
            StaffListing(
                id=account.id,
                username=account.username,
                email=account.email,
                first_name=account.first_name,
                last_name=account.last_name,
                role=member.role,
                school_codes=tuple(code for code, _ in schools.get(account.id, ())),
                school_names=tuple(name for _, name in schools.get(account.id, ())),
                enrolled=member.totp_confirmed_at is not None,
                last_login_at=account.current_login_at,
            )
            for account, member in rows
        ]

    def change_role(
        self, actor: Actor, account_id: str, role: StaffRole, school_codes: Sequence[str] = ()
    ) -> None:
        """Give a staff member another role (a school admin with at least one school)."""
        member = self._other_member(actor, account_id)
        codes = sorted({code.strip() for code in school_codes if code.strip()})
        if role is StaffRole.SCHOOL_ADMIN and not codes:
            raise StaffChangeRefused("a school admin needs at least one school")
        if role is not StaffRole.SCHOOL_ADMIN and codes:
            raise StaffChangeRefused("only a school admin has schools")
        found = {
            code: school_id
            for code, school_id in self.session.execute(
                select(School.code, School.id).where(School.code.in_(codes))
            )
        }
        unknown = [code for code in codes if code not in found]
        if unknown:
            raise StaffChangeRefused(f"no school with the code {unknown[0]}")
        previous = member.role
        member.role = role
        self.session.execute(delete(StaffSchool).where(StaffSchool.account_id == account_id))
        for code in codes:
            self.session.add(StaffSchool(account_id=account_id, school_id=found[code]))
        ended = self._end_console_sessions(account_id)
        audit(
            self.session,
            "staff.role_changed",
            account_id=account_id,
            actor=actor.label,
            previous=previous.value,
            role=role.value,
            schools=codes,
            ended_sessions=ended,
        )
        self.session.commit()

    def reset_second_factor(self, actor: Actor, account_id: str) -> None:
        """Forget the member's authenticator and backup codes: the next sign-in enrols anew."""
        member = self._other_member(actor, account_id)
        member.totp_secret = None
        member.totp_confirmed_at = None
        member.totp_last_step = 0
        self.session.execute(delete(BackupCode).where(BackupCode.account_id == account_id))
        ended = self._end_console_sessions(account_id)
        audit(
            self.session,
            "staff.second_factor_reset",
            account_id=account_id,
            actor=actor.label,
            ended_sessions=ended,
        )
        self.session.commit()

    def _other_member(self, actor: Actor, account_id: str) -> StaffMember:
        actor.require(Permission.MANAGE_STAFF)
        member = self.session.get(StaffMember, account_id) if len(account_id) <= 32 else None
        if member is None:
            raise OutOfReach(account_id)
        if account_id == actor.staff_id:
            raise OwnStaffAccount("you cannot change your own role or second factor")
        return member

    def _end_console_sessions(self, account_id: str) -> int:
        result = self.session.execute(delete(StaffSession).where(StaffSession.account_id == account_id))
        return int(getattr(result, "rowcount", 0) or 0)
