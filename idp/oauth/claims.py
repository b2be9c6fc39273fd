"""Which claims each scope releases, and their values for an account.

One table (``SCOPE_CLAIMS``) serves the ID token, userinfo and discovery's ``claims_supported``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from idp.accounts.models import Account
from idp.db import DbSession
from idp.oauth.scopes import scope_list
from idp.students.guardianship import GuardianshipService, LinkedStudent

SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "openid": ("sub",),
    "profile": (
        "name",
        "given_name",
        "family_name",
        "preferred_username",
        "locale",
        "account_type",
        "last_login_at",
        "last_login_device",
    ),
    "email": ("email", "email_verified"),
    "students": ("student_ids", "students", "primary_student_id"),
}

# Claims the token itself owns; user data may never overwrite them (OIDC Core 2, 5.1).
RESERVED_CLAIMS = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "azp",
        "at_hash",
        "c_hash",
        "sid",
        "client_id",
        "scope",
        "typ",
        "act",
    }
)


STUDENT_CLAIMS = frozenset(SCOPE_CLAIMS["students"])


def claims_supported() -> list[str]:
    names = {claim for claims in SCOPE_CLAIMS.values() for claim in claims}
    return sorted(names | {"iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "amr", "sid"})


class ClaimsBuilder:
    def __init__(self, session: DbSession, *, guardianship: GuardianshipService) -> None:
        self.session = session
        self.guardianship = guardianship

    def for_scope(self, account: Account, scope: str) -> dict[str, Any]:
        """Return the user claims ``account`` releases for ``scope``, ``sub`` included."""
        granted = scope_list(scope)
        wanted = {claim for s in granted for claim in SCOPE_CLAIMS.get(s, ())}
        values = self._values(account, wanted)
        claims = {name: value for name, value in values.items() if name in wanted}
        claims["sub"] = account.id
        return claims

    def _values(self, account: Account, wanted: set[str]) -> dict[str, Any]:
        values: dict[str, Any] = {
            "name": account.display_name,
            "given_name": account.first_name,
            "family_name": account.last_name,
            "preferred_username": account.username,
            "account_type": account.type.value,
            "email": account.email,
            "email_verified": account.email_verified_at is not None,
        }
        if account.locale:
            values["locale"] = account.locale
        if account.last_login_at is not None:
            values["last_login_at"] = int(account.last_login_at.timestamp())
        if account.last_login_device:
            # Browser and system only ("Firefox (Windows)"): a family's security aid, never an address.
            values["last_login_device"] = account.last_login_device
        if wanted & STUDENT_CLAIMS:
            values.update(_student_claims(account, self.guardianship.linked_student_records(account.id)))
        return values


def _student_claims(account: Account, linked: Sequence[LinkedStudent]) -> dict[str, Any]:
    students = [_student_claim(student) for student in linked]
    claims: dict[str, Any] = {
        "student_ids": [s["id"] for s in students],
        "students": students,
    }
    primary = next((s for s in linked if s.student_id == account.primary_student_id), None)
    if primary is not None:
        claims["primary_student_id"] = primary.sis_id
    return claims


def _student_claim(student: LinkedStudent) -> dict[str, Any]:
    return {
        "id": student.sis_id,
        "given_name": student.first_name,
        "family_name": student.last_name,
        "school_id": student.school_code,
        "school_name": student.school_name,
        "relationship": student.relationship,
    }


def without_reserved(claims: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in claims.items() if name not in RESERVED_CLAIMS}
