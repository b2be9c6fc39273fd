"""Scope strings as lists, and the scopes this provider knows."""

from __future__ import annotations

SUPPORTED_SCOPES: tuple[str, ...] = ("openid", "profile", "email", "students", "offline_access")
DEFAULT_CLIENT_SCOPE = "openid profile email students"


def scope_list(scope: str | None) -> list[str]:
    """Split a scope string, keeping the first occurrence of each scope in order."""
    seen: dict[str, None] = {}
    for item in (scope or "").split():
        seen.setdefault(item, None)
    return list(seen)
