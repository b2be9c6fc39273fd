"""What every console page shares: the blueprint, the signed-in staff member, the guard decorator,
and the console's 403 and 404 pages.

Every console view (GET and POST) is wrapped in ``staff_page``: it opens only for a complete
console session (password and second factor, not idle too long), with the permission asked for,
and, for sensitive actions, a proof of the password and a code from the last few minutes.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString
from werkzeug.wrappers import Response

from idp.accounts.models import Account
from idp.admin.actor import Actor, NotPermitted, OutOfReach
from idp.admin.roles import Permission
from idp.admin.staff import FRESH_PROOF, Console, Step
from idp.extensions import db
from idp.web.context import services
from idp.web.cookies import staff_cookie_name

bp = Blueprint("admin", __name__, url_prefix="/admin")

F = TypeVar("F", bound=Callable[..., Any])

CONSOLE_KEY = "idp.staff_console"
MAX_NEXT_LENGTH = 2000

# Where a console session that is not complete goes first.
STEP_ENDPOINTS = {
    Step.CODE: "admin.signin_code",
    Step.CHANGE_PASSWORD: "admin.change_password",
    Step.ENROL: "admin.enrol",
}

# The console's sections, shown in the header to those who may open them.
NAVIGATION: tuple[tuple[str, LazyString, Permission], ...] = (
    ("/admin/accounts", _l("Accounts"), Permission.VIEW),
    ("/admin/audit", _l("Audit trail"), Permission.AUDIT_TRAIL),
    ("/admin/district", _l("District options"), Permission.DISTRICT_OPTIONS),
    ("/admin/policies", _l("Password requirements"), Permission.PASSWORD_POLICIES),
    ("/admin/staff", _l("Staff"), Permission.MANAGE_STAFF),
)


def staff_cookie() -> str | None:
    """The browser's console session cookie, as it came."""
    return request.cookies.get(staff_cookie_name())


def find_console() -> Console | None:
    """Return the browser's live console session at whatever step it is, looked up once per request."""
    if CONSOLE_KEY not in request.environ:
        request.environ[CONSOLE_KEY] = services().staff().find(staff_cookie())
    found: Console | None = request.environ[CONSOLE_KEY]
    return found


def forget_console() -> None:
    """Look the console session up again on next use (after a step changed it)."""
    request.environ.pop(CONSOLE_KEY, None)


def current_console() -> Console:
    """Inside a ``staff_page`` view: the complete console session."""
    found = find_console()
    if found is None:
        raise RuntimeError("current_console() outside a staff_page view")
    return found


def current_actor() -> Actor:
    """Inside a ``staff_page`` view: the signed-in staff member as the services' actor."""
    return current_console().actor


def current_staff() -> Account:
    """Inside a ``staff_page`` view: the signed-in staff member's account."""
    return current_console().account


def safe_next(value: str | None) -> str | None:
    """Return ``value`` if it is a console path of this site (no open redirect), else None."""
    if not value or len(value) > MAX_NEXT_LENGTH or "\\" in value or not value.isprintable():
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/admin") or value.startswith("//"):
        return None
    return value


def _this_page() -> str:
    return request.full_path.rstrip("?") if request.query_string else request.path


def return_path() -> str:
    """Where to come back to after a sign-in or re-authentication.

    A GET comes back to itself; a POST is never replayed: it comes back to the page its form was
    on (the form's hidden ``next`` field, else the Referer's path), else the console's home.
    """
    if request.method == "GET":
        return _this_page()
    from_form = safe_next(request.form.get("next"))
    if from_form:
        return from_form
    referrer = request.referrer
    if referrer:
        parts = urlsplit(referrer)
        same_site = parts.netloc in ("", request.host)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if same_site and safe_next(path):
            return path
    return url_for("admin.home")


def step_redirect(console: Console) -> Response:
    """Send a console session that is not complete to the step it is at."""
    return redirect(url_for(STEP_ENDPOINTS[console.step]), code=303)


def staff_page(permission: Permission | None = None, *, sensitive: bool = False) -> Callable[[F], F]:
    """Guard a console view: a complete staff session, ``permission``, and for ``sensitive``
    actions a fresh proof of the password and a code.

    ``OutOfReach`` raised by the view becomes the console's 404 and ``NotPermitted`` its 403.
    """

    def decorator(view: F) -> F:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            console = find_console()
            if console is None:
                return redirect(url_for("admin.signin", next=return_path()), code=303)
            if console.step is not Step.READY:
                return step_redirect(console)
            if permission is not None and not console.actor.may(permission):
                return admin_forbidden()
            if sensitive and not console.proved_since(services().clock.now() - FRESH_PROOF):
                return redirect(url_for("admin.reauth", next=return_path()), code=303)
            try:
                return view(*args, **kwargs)
            except OutOfReach:
                db.session.rollback()
                return admin_not_found()
            except NotPermitted:
                db.session.rollback()
                return admin_forbidden()

        return cast(F, guarded)

    return decorator


def admin_not_found() -> Response:
    """The console's 404: what a thing out of the actor's reach looks like too."""
    body = render_template(
        "admin/error.html", title=_("Not found"), message=_("There is no such page or account.")
    )
    return make_response(body, 404)


def admin_forbidden() -> Response:
    """The console's 403: the staff member's role does not allow this."""
    body = render_template(
        "admin/error.html",
        title=_("Not allowed"),
        message=_("Your role does not allow this. Ask a district administrator if you need it."),
    )
    return make_response(body, 403)


def admin_chrome() -> dict[str, Any]:
    """What the console's header shows: the district, the staff member, the sections they may open."""
    console = find_console()
    if console is None or console.step is not Step.READY:
        return {"staff": None, "district": services().district_options().current().name, "nav": []}
    actor = console.actor
    nav = [
        {"href": href, "label": str(label), "current": request.path.startswith(href)}
        for href, label, needed in NAVIGATION
        if actor.may(needed)
    ]
    return {
        "staff": console.account,
        "role": console.member.role.value,
        "district": services().district_options().current().name,
        "nav": nav,
    }


@bp.app_context_processor
def _console_globals() -> dict[str, Any]:
    # A function, not values: only console pages pay for the lookups.
    return {"admin_chrome": admin_chrome}
