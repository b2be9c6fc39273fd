"""The actor of an admin action: a staff member or an admin API client, with what it may do and
the schools it reaches. Services take one and check it; no HTTP is involved."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, exists, select, true

from idp.accounts.models import Account, AccountType
from idp.admin.models import StaffRole
from idp.admin.roles import ROLE_PERMISSIONS, SCOPE_PERMISSIONS, Permission
from idp.students.models import GuardianLink, Student


class NotPermitted(PermissionError):
    """The actor's role does not allow this action (a 403: the actor knows the thing exists)."""

    def __init__(self, permission: Permission) -> None:
        super().__init__(f"not permitted: {permission.value}")
        self.permission = permission


class OutOfReach(LookupError):
    """The account or student is not one the actor may see: answered like one that does not exist."""


@dataclass(frozen=True)
class Actor:
    # How the audit trail names the actor: "staff:<account id>" or "client:<client_id>".
    label: str
    permissions: frozenset[Permission]
    # The school row ids the actor reaches; None: the whole district.
    school_ids: frozenset[str] | None
    staff_id: str | None = None

    @classmethod
    def staff(cls, account_id: str, role: StaffRole, school_ids: frozenset[str] = frozenset()) -> Actor:
        reach = school_ids if role is StaffRole.SCHOOL_ADMIN else None
        return cls(f"staff:{account_id}", ROLE_PERMISSIONS[role], reach, staff_id=account_id)

    @classmethod
    def client(cls, client_id: str, scope: str, school_ids: frozenset[str] = frozenset()) -> Actor:
        return cls(f"client:{client_id}", SCOPE_PERMISSIONS[scope], school_ids or None)

    @property
    def whole_district(self) -> bool:
        return self.school_ids is None

    def may(self, permission: Permission) -> bool:
        return permission in self.permissions

    def require(self, permission: Permission) -> None:
        if permission not in self.permissions:
            raise NotPermitted(permission)

    def reaches_accounts(self) -> ColumnElement[bool]:
        """A WHERE clause on ``Account``: the parent and student accounts this actor may see."""
        managed = Account.type.in_((AccountType.PARENT, AccountType.STUDENT))
        if self.school_ids is None:
            return managed & true()
        linked = exists(
            select(GuardianLink.id).where(
                GuardianLink.account_id == Account.id, GuardianLink.school_id.in_(self.school_ids)
            )
        )
        return managed & linked

    def reaches_students(self) -> ColumnElement[bool]:
        """A WHERE clause on ``Student``: the students of this actor's schools."""
        if self.school_ids is None:
            return true()
        return Student.school_id.in_(self.school_ids)
