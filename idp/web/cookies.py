"""The provider's cookies: scoped by host (``__Host-`` over HTTPS), HTTP-only, SameSite=Lax.

Cookies are scoped by host, not port, so the provider and a portal on the same host must not
share names: the provider's are ``idp_*``.
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from werkzeug.wrappers import Response


def _secure() -> bool:
    # Set by init_web from the issuer's scheme, for Flask's own cookie and ours alike.
    return bool(current_app.config["SESSION_COOKIE_SECURE"])


def _name(base: str) -> str:
    return f"__Host-{base}" if _secure() else base


def session_cookie_name() -> str:
    return _name("idp_session")


def device_cookie_name() -> str:
    return _name("idp_device")


def change_ticket_cookie_name() -> str:
    return _name("idp_password_change")


def staff_cookie_name() -> str:
    """The console session's cookie: separate from the OP session's, so neither stands for the other."""
    return _name("idp_staff")


def portal_cookie_name() -> str:
    """The client id of the portal a parent came to Account Preferences from ("Back to …")."""
    return _name("idp_portal")


def set_cookie(response: Response, name: str, value: str, *, max_age: timedelta | None = None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=int(max_age.total_seconds()) if max_age is not None else None,
        httponly=True,
        secure=_secure(),
        samesite="Lax",
        path="/",
    )


def clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", secure=_secure(), samesite="Lax")
