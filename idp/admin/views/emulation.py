"""Emulating a parent over HTTP: the console's start (a reason, a fresh proof), the banner's End,
the banner itself on every page, and the one check that refuses credential changes while emulated."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response

from idp.accounts.models import OPSession
from idp.accounts.views.account import render_profile, render_students
from idp.admin.emulation import AccountNotAvailable, ReasonRefused
from idp.admin.roles import Permission
from idp.admin.views.account_forms import ReasonForm
from idp.admin.views.common import current_actor, staff_page
from idp.web.context import browser_session, client_ip, current_op_session, services, user_agent
from idp.web.cookies import clear_cookie, session_cookie_name, set_cookie

bp = Blueprint("admin_emulation", __name__, url_prefix="/admin")

# Every POST that changes a credential of the signed-in account, or recovers one: refused while
# staff emulate it (issue 17: "It can change no credential"). Recovery is refused too, so that no
# reset link can be asked for, or used, from the emulated browser.
PROFILE_CREDENTIALS = {
    "preferences.change_email": "email",
    "preferences.change_username": "username",
    "preferences.change_password": "password",
}
STUDENT_LINKING = "preferences.add_student"
# A parent's own data (idp.accounts.views.own_data): refused, reading included, since the export
# and the device list are the holder's alone and the rest would end or delete what is theirs.
OWN_DATA = frozenset(
    {
        "own_data.confirm_remove_student",
        "own_data.remove_student",
        "own_data.relationship",
        "own_data.change_relationship",
        "own_data.devices",
        "own_data.sign_out_device",
        "own_data.sign_out_others",
        "own_data.download",
        "own_data.confirm_delete",
        "own_data.delete_account",
    }
)
RECOVERY = frozenset(
    {
        "recovery.forgot_password",
        "recovery.forgot_username",
        "recovery.reset",
        "password_change.change_password",
    }
)


@bp.post("/accounts/<account_id>/emulate")
@staff_page(Permission.EMULATE, sensitive=True)
def start(account_id: str) -> Response:
    form = ReasonForm()  # the CSRF token was checked before the view
    emulation = services().emulation()
    try:
        started = emulation.start(
            current_actor(),
            account_id,
            form.reason.data or "",
            staff_session_ip=client_ip(),
            user_agent=user_agent(),
            replacing=browser_session(),
        )
    except ReasonRefused as refused:
        return _not_started(_reason_message(refused.problem), 400)
    except AccountNotAvailable:
        return _not_started(_("This account is disabled or has expired: enable it before emulating it."), 409)
    response = redirect(url_for("preferences.account"), code=303)
    set_cookie(response, session_cookie_name(), started.cookie_value)
    return response


def _reason_message(problem: str) -> str:
    messages = {
        "too_long": _("The reason must be at most 200 characters long."),
        "unprintable": _("The reason contains characters that cannot be shown."),
    }
    return str(messages.get(problem) or _("Enter the reason for emulating this account."))


def _not_started(message: str, status: int) -> Response:
    body = render_template("admin/error.html", title=_("The emulation did not start"), message=message)
    return make_response(body, status)


@bp.post("/emulation/end")
def end() -> Response:
    """End the browser's emulation: open to the emulated session's cookie alone, so that it ends
    even after the console session went idle."""
    ended = services().emulation().end(browser_session())
    if ended is None:
        return redirect(url_for("admin.home"), code=303)
    # Back to the account's console page, /admin/accounts/<id> (issue 17's URL).
    response = redirect(f"{request.script_root}/admin/accounts/{ended.account_id}", code=303)
    clear_cookie(response, session_cookie_name())
    return response


def emulated_session() -> OPSession | None:
    """The browser's OP session if staff emulate its account."""
    if browser_session() is None:
        return None
    found = current_op_session()
    return found if found is not None and found.emulated_by is not None else None


def emulated_name() -> str | None:
    """The name the banner shows: the emulated account's, or None when the session is not emulated."""
    try:
        emulated = emulated_session()
        return emulated.account.display_name if emulated is not None else None
    except SQLAlchemyError:
        # The session ended in this request (a sign-out page), or the database fails on an error
        # page: the page matters more than the banner.
        return None


@bp.app_context_processor
def _banner_globals() -> dict[str, Any]:
    # A function, not a value: only pages that show the banner pay for the lookup.
    return {"emulated_name": emulated_name}


@bp.before_app_request
def refuse_credential_changes() -> Response | None:
    """The one check: no credential changes, no recovery, no Access ID linking, none of the
    parent's own data (OWN_DATA) while emulated."""
    endpoint = request.endpoint or ""
    guarded = endpoint in PROFILE_CREDENTIALS or endpoint == STUDENT_LINKING or endpoint in RECOVERY
    if not (request.method == "POST" and guarded) and endpoint not in OWN_DATA:
        return None
    emulated = emulated_session()
    if emulated is None:
        return None
    message = _(
        "You are viewing this account as district staff: its password, email address, username, "
        "recovery and students cannot be changed here."
    )
    if endpoint in PROFILE_CREDENTIALS:
        return render_profile(emulated.account, PROFILE_CREDENTIALS[endpoint], error=message, status=403)
    if endpoint == STUDENT_LINKING:
        return render_students(emulated.account, row_error=message, status=403)
    if endpoint in OWN_DATA:
        message = _(
            "You are viewing this account as district staff: its students, devices and data "
            "cannot be managed here, and it cannot be deleted here."
        )
    body = render_template("error.html", message=message, error="access_denied")
    return make_response(body, 403)
