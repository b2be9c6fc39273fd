"""Who may do what in the console and the admin API: one table from role to permissions."""

from __future__ import annotations

import enum

from idp.admin.models import StaffRole


class Permission(enum.StrEnum):
    # Find and read accounts and students, their sign-ins, sessions, grants and audit events.
    VIEW = "view"
    RESEND_VERIFICATION = "resend-verification"
    UNLOCK = "unlock"
    SET_TEMPORARY_PASSWORD = "set-temporary-password"  # noqa: S105
    # Unlink, delete, disable and enable, change type, expiry, test mark.
    MANAGE_ACCOUNTS = "manage-accounts"
    EMULATE = "emulate"
    RESET_ALL_PASSWORDS = "reset-all-passwords"
    DISTRICT_OPTIONS = "district-options"
    PASSWORD_POLICIES = "password-policies"  # noqa: S105
    MANAGE_STAFF = "manage-staff"
    AUDIT_TRAIL = "audit-trail"


_HELP_DESK = frozenset(
    {Permission.VIEW, Permission.RESEND_VERIFICATION, Permission.UNLOCK, Permission.SET_TEMPORARY_PASSWORD}
)
_SCHOOL_ADMIN = _HELP_DESK | {Permission.MANAGE_ACCOUNTS, Permission.EMULATE}

ROLE_PERMISSIONS: dict[StaffRole, frozenset[Permission]] = {
    StaffRole.HELP_DESK: _HELP_DESK,
    StaffRole.SCHOOL_ADMIN: _SCHOOL_ADMIN,
    StaffRole.DISTRICT_ADMIN: frozenset(Permission),
}

# What an admin API client's scope grants: reading, or everything its reach allows but emulation
# (a browser session as a parent means nothing to a machine client).
SCOPE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "admin:read": frozenset({Permission.VIEW, Permission.AUDIT_TRAIL}),
    "admin:write": frozenset(Permission) - {Permission.EMULATE, Permission.MANAGE_STAFF},
}
