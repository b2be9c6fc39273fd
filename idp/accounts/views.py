"""Hosted pages: sign in, sign out, and the account page."""

from __future__ import annotations

from collections.abc import Sequence

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp.accounts.change_ticket import start_required_change
from idp.accounts.forms import SignInForm, SignOutForm, read_signin_post
from idp.accounts.lockout import LockedOut
from idp.accounts.models import Account
from idp.accounts.service import (
    AccountDisabled,
    AccountExpired,
    InvalidCredentials,
    PasswordChangeRequired,
    SignInContext,
)
from idp.accounts.sessions import EndedSession
from idp.accounts.wiring import signin_needs_verification
from idp.audit import audit
from idp.extensions import csrf, db
from idp.limits import limit_signin
from idp.oauth.logout import InvalidLogoutRequest, read_logout_request
from idp.oauth.pending import PendingRequest, find_pending_request
from idp.oauth.server import query_client
from idp.runtime import runtime
from idp.web import (
    clear_session_cookie,
    current_op_session,
    prefer_locales,
    session_cookie_name,
    set_device_cookie,
    set_session_cookie,
    signin_context,
)

bp = Blueprint("accounts", __name__)


@bp.route("/signin", methods=["GET", "POST"])
@limit_signin
def signin() -> Response | str:
    if request.method == "GET":
        form = SignInForm()
        form.request_id.data = request.args.get("request", "")
        pending = find_pending_request(form.request_id.data)
        if pending is not None:
            prefer_locales(pending.ui_locales)
            form.username.data = pending.login_hint
        return render_signin(form, pending)
    posted = read_signin_post(request.form)
    pending = find_pending_request(request.form.get("request_id", ""))
    if pending is not None:
        prefer_locales(pending.ui_locales)
    if posted is None:
        return render_signin(SignInForm(), pending, error=_("Invalid username or password."))
    rt = runtime()
    context = signin_context()
    try:
        account = rt.accounts().authenticate(posted.username, posted.password, context)
    except InvalidCredentials:
        db.session.commit()  # keep the audit event
        return render_signin(SignInForm(), pending, error=_("Invalid username or password."))
    except LockedOut as locked:
        db.session.commit()
        return render_signin(SignInForm(), pending, error=locked_message(locked))
    except AccountExpired:
        db.session.commit()
        return render_signin(SignInForm(), pending, error=_("This account has expired."))
    except AccountDisabled:
        db.session.commit()
        return render_signin(SignInForm(), pending, error=_("This account is disabled."))
    except PasswordChangeRequired as required:
        db.session.commit()
        return start_required_change(required, pending.id if pending is not None else None)
    if signin_needs_verification(account):
        # The district wants verified addresses: nothing of this sign-in is kept but its refusal.
        db.session.rollback()
        audit(db.session, "signin.refused", account_id=account.id, reason="email_unverified")
        db.session.commit()
        message = _("Verify your email address before you sign in: open the link we emailed you.")
        return render_signin(SignInForm(), pending, error=message, unverified=True)
    return finish_signin(account, pending, context=context)


def finish_signin(
    account: Account,
    pending_request: str | PendingRequest | None,
    *,
    ended_elsewhere: Sequence[EndedSession] = (),
    context: SignInContext | None = None,
) -> Response:
    """Start the session of a completed sign-in, commit, and go on to the pending authorization.

    ``pending_request``: the pending authorization request, or its id (looked up after the commit).
    ``ended_elsewhere`` are sessions the sign-in ended (a password reset ends them all): their
    portals hear of it after the commit, like those of a session this browser had for someone else.
    ``context``: the sign-in's own, when the caller has it (reading the device cookie costs a MAC).
    """
    rt = runtime()
    context = context or signin_context()
    sessions = rt.sessions()
    # Session fixation: whatever session the browser had, it gets a new id now.
    ended = sessions.end(request.cookies.get(session_cookie_name()))
    # Signing in again as the same account continues the browser's live session (same sid, same
    # portals); another account's session, or one that timed out, ends here and its portals hear of it
    # (Back-Channel Logout 1.0).
    continues = ended if ended is not None and not ended.timed_out else None
    started = sessions.start(
        account, ip_address=context.ip_address, user_agent=context.user_agent, continues=continues
    )
    db.session.commit()
    to_tell = [*ended_elsewhere]
    if ended is not None and (ended.account_id != account.id or ended.timed_out):
        to_tell.append(ended)
    if to_tell:
        backchannel = rt.backchannel()
        for gone in to_tell:
            backchannel.notify(gone)
        db.session.commit()
    pending = find_pending_request(pending_request) if isinstance(pending_request, str) else pending_request
    target = (
        url_for("oauth.continue_authorization", request_id=pending.id)
        if pending is not None
        else url_for("preferences.account")
    )
    response = redirect(target, code=303)
    set_session_cookie(response, started.cookie_value)
    set_device_cookie(response, account.id)
    return response


def locked_message(locked: LockedOut) -> str:
    """The lock message of the sign-in page (and of any page whose password check is locked)."""
    message: str = _(
        "This account is locked because of too many failed sign-in attempts. "
        "Try again in %(minutes)d minutes.",
        minutes=locked.minutes,
    )
    return message


def render_signin(
    form: SignInForm, pending: object, error: str | None = None, *, unverified: bool = False
) -> Response:
    form.password.data = ""
    client_name = getattr(pending, "client_name", None)
    body = render_template(
        "signin.html", form=form, error=error, client_name=client_name, unverified=unverified
    )
    return make_response(body, 200)


# RP-Initiated Logout 1.0 2: portals may POST a logout request; our own form is checked below.
csrf.exempt("idp.accounts.views.logout")


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Response | str:
    """End the OP session (RP-Initiated Logout 1.0); its portals hear of it (Back-Channel Logout 1.0)."""
    values = request.form if request.method == "POST" else request.args
    # Our sign-out forms carry a CSRF token; a portal's logout request does not.
    confirmed = request.method == "POST" and "csrf_token" in request.form
    if confirmed:
        csrf.protect()
    rt = runtime()
    try:
        ask = read_logout_request(
            values,
            keys=rt.keys(),
            issuer=rt.settings.issuer,
            find_client=query_client,
            multi=lambda name: len(values.getlist(name)),
        )
    except InvalidLogoutRequest as invalid:
        return logout_error(invalid)
    prefer_locales(ask.ui_locales)
    op_session = current_op_session()
    if op_session is not None and not confirmed and not ask.names_session(op_session):
        # Without a hint for this very session, ask first: a link must not sign anyone out.
        return render_template("logout.html", form=SignOutForm(), ask=ask)
    ended = rt.sessions().end(request.cookies.get(session_cookie_name()))
    if ended is not None:
        audit(db.session, "op_session.ended", account_id=ended.account_id, sid=ended.sid)
    db.session.commit()
    if ended is not None:
        rt.backchannel().notify(ended)
        db.session.commit()
    response = (
        redirect(ask.redirect_to, code=303)
        if ask.redirect_to
        else make_response(render_template("signed_out.html"))
    )
    clear_session_cookie(response)
    return response


def logout_error(invalid: InvalidLogoutRequest) -> Response:
    messages = {
        "id_token_hint": _("This sign-out link is not valid: it names a sign-in this site did not make."),
        "client": _("This sign-out link names a portal this site does not know."),
        "redirect_uri": _("This sign-out link would send you to an address the portal did not register."),
    }
    message = messages.get(invalid.reason, _("This sign-out link is not valid."))
    body = render_template("error.html", message=message, error="invalid_request")
    return make_response(body, 400)
