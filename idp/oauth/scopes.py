"""Scope strings as lists, and the scopes this provider knows."""

from __future__ import annotations

SUPPORTED_SCOPES: tuple[str, ...] = ("openid", "profile", "email", "students", "offline_access")
DEFAULT_CLIENT_SCOPE = "openid profile email students"
# The admin API's scopes, weakest first: a client holding one may ask for it or any before it.
ADMIN_SCOPES: tuple[str, ...] = ("admin:read", "admin:write")
ADMIN_API_PATH = "/admin/api"


def admin_api_audience(issuer: str) -> str:
    """Return the ``aud`` of admin API access tokens: no other endpoint takes them."""
    return issuer + ADMIN_API_PATH


def scope_list(scope: str | None) -> list[str]:
    """Split a scope string, keeping the first occurrence of each scope in order."""
    seen: dict[str, None] = {}
    for item in (scope or "").split():
        seen.setdefault(item, None)
    return list(seen)


def admin_scope_within(asked: str | None, held: str | None) -> bool:
    """Whether the admin scope ``asked`` is one scope no stronger than the ``held`` one."""
    if asked not in ADMIN_SCOPES or held not in ADMIN_SCOPES:
        return False
    return ADMIN_SCOPES.index(asked) <= ADMIN_SCOPES.index(held)
