"""Hosted pages: sign in and sign out."""

from __future__ import annotations

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from idp.accounts.change_ticket import LIFE
from idp.accounts.lockout import LockedOut
from idp.accounts.service import (
    AccountDisabled,
    AccountExpired,
    InvalidCredentials,
    PasswordChangeRequired,
    TemporaryPasswordExpired,
)
from idp.accounts.signin import EmailNotVerified, SignedIn
from idp.accounts.views.forms import SignInForm, SignOutForm
from idp.extensions import csrf
from idp.oauth.endpoints import InvalidLogoutRequest
from idp.oauth.logout import names_session
from idp.oauth.pending import PendingRequest
from idp.web import prefer_locales
from idp.web.context import browser_session, current_op_session, oauth_server, services, signin_context
from idp.web.cookies import (
    change_ticket_cookie_name,
    clear_cookie,
    device_cookie_name,
    session_cookie_name,
    set_cookie,
)

bp = Blueprint("accounts", __name__)


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> Response:
    form = SignInForm()
    request_id = request.values.get("request" if request.method == "GET" else "request_id", "")
    pending = services().pending_requests().find(request_id)
    if pending is not None:
        prefer_locales(pending.ui_locales)
    if request.method == "GET":
        form.request_id.data = request_id
        if pending is not None:
            form.username.data = pending.login_hint
        return render_signin(form, pending)
    if not form.validate_on_submit():
        return render_signin(form, pending, error=_("Invalid username or password."))
    try:
        signed_in = (
            services()
            .signin()
            .sign_in(
                form.username.data,
                form.password.data or "",
                signin_context(pending.client_id if pending is not None else None),
                browser_session=browser_session(),
            )
        )
    except InvalidCredentials:
        return render_signin(form, pending, error=_("Invalid username or password."))
    except LockedOut as locked:
        return render_signin(form, pending, error=locked_message(locked))
    except AccountExpired:
        return render_signin(form, pending, error=_("This account has expired."))
    except AccountDisabled:
        return render_signin(form, pending, error=_("This account is disabled."))
    except TemporaryPasswordExpired:
        message = _("This temporary password has expired. Ask your school for a new one.")
        return render_signin(form, pending, error=message)
    except EmailNotVerified:
        message = _("Verify your email address before you sign in: open the link we emailed you.")
        return render_signin(form, pending, error=message, unverified=True)
    except PasswordChangeRequired as required:
        return to_password_change(required, pending)
    return signed_in_response(signed_in, pending, return_to=return_path(request.form.get("next")))


# Pages a sign-in may return to (``next``): local paths under these prefixes only, never a URL
# that could leave the site.
RETURN_PREFIXES = ("/invitations/",)


def return_path(value: str | None) -> str | None:
    """Return ``value`` if it is a local page a sign-in may go back to, else None."""
    if not value or len(value) > 300 or not value.startswith(RETURN_PREFIXES):
        return None
    if any(ch in value for ch in "\\?#") or not value.isprintable() or "//" in value or ".." in value:
        return None
    return value


def signed_in_response(
    signed_in: SignedIn, pending: PendingRequest | None, *, return_to: str | None = None
) -> Response:
    """Go on to the authorization the sign-in was for, else to the page it came from (``next``) or
    to Account Preferences, with the new cookies."""
    target = (
        url_for("oauth.continue_authorization", request_id=pending.id)
        if pending is not None
        else return_to or url_for("preferences.account")
    )
    response = redirect(target, code=303)
    set_cookie(response, session_cookie_name(), signed_in.session_cookie)
    devices = services().devices
    set_cookie(
        response,
        device_cookie_name(),
        devices.issue(request.cookies.get(device_cookie_name()), signed_in.account.id),
        max_age=devices.max_age,
    )
    return response


def to_password_change(required: PasswordChangeRequired, pending: PendingRequest | None) -> Response:
    """Send the browser to "Change Your Password" with its ticket."""
    tickets = services().change_tickets()
    response = redirect(url_for("password_change.change_password"), code=303)
    ticket = tickets.issue(required.account, required.reason, pending.id if pending is not None else None)
    set_cookie(response, change_ticket_cookie_name(), ticket, max_age=LIFE)
    return response


def locked_message(locked: LockedOut) -> str:
    """The lock message of the sign-in page (and of any page whose password check is locked)."""
    message: str = ngettext(
        "This account is locked because of too many failed sign-in attempts. Try again in %(num)d minute.",
        "This account is locked because of too many failed sign-in attempts. Try again in %(num)d minutes.",
        locked.minutes,
    )
    return message


def render_signin(
    form: SignInForm, pending: PendingRequest | None, error: str | None = None, *, unverified: bool = False
) -> Response:
    form.password.data = ""
    client_name = pending.client_name if pending is not None else None
    body = render_template(
        "signin.html",
        form=form,
        error=error,
        client_name=client_name,
        unverified=unverified,
        return_to=return_path(request.values.get("next")),
    )
    return make_response(body, 200)


# RP-Initiated Logout 1.0 2: portals may POST a logout request; our own form is checked below.
csrf.exempt("idp.accounts.views.signin.logout")


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Response:
    """End the OP session (RP-Initiated Logout 1.0); its portals hear of it (Back-Channel Logout 1.0)."""
    values = request.form if request.method == "POST" else request.args
    # Our sign-out forms carry a CSRF token; a portal's logout request does not.
    confirmed = request.method == "POST" and "csrf_token" in request.form
    if confirmed:
        csrf.protect()
    if _malformed(values):
        return logout_error(InvalidLogoutRequest("malformed", "The logout request is malformed."))
    try:
        asked = oauth_server().validate_endpoint_request("end_session")
    except InvalidLogoutRequest as invalid:
        return logout_error(invalid)
    prefer_locales(asked.ui_locales)
    op_session = current_op_session()
    if op_session is not None and not confirmed and not names_session(asked.id_token_claims, op_session):
        # Without a hint for this very session, ask first: a link must not sign anyone out.
        ask = {name: values.get(name) for name in LOGOUT_PARAMETERS} | {"client": asked.client}
        return make_response(render_template("logout.html", form=SignOutForm(), ask=ask))
    # Signing out of an emulated session ends the emulation (audited, its grants revoked).
    if services().emulation().end(browser_session()) is None:
        services().signin().sign_out(browser_session())
    response = (
        redirect(asked.redirect_uri, code=303)
        if asked.redirect_uri
        else make_response(render_template("signed_out.html"))
    )
    clear_cookie(response, session_cookie_name())
    return response


LOGOUT_PARAMETERS = (
    "id_token_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
    "ui_locales",
    "logout_hint",
)
MAX_LOGOUT_PARAMETER_LENGTH = 16_000


def _malformed(values: MultiDict[str, str]) -> bool:
    """A parameter sent twice or too long (a NUL never arrives: idp.web.parameters)."""
    return any(
        len(values.getlist(name)) > 1 or len(values.get(name) or "") > MAX_LOGOUT_PARAMETER_LENGTH
        for name in LOGOUT_PARAMETERS
    )


def logout_error(invalid: InvalidLogoutRequest) -> Response:
    messages = {
        "id_token_hint": _("This sign-out link is not valid: it names a sign-in this site did not make."),
        "client": _("This sign-out link names a portal this site does not know."),
        "redirect_uri": _("This sign-out link would send you to an address the portal did not register."),
    }
    message = messages.get(invalid.reason, _("This sign-out link is not valid."))
    body = render_template("error.html", message=message, error="invalid_request")
    return make_response(body, 400)
