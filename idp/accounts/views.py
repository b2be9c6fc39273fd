"""Hosted pages: sign in, sign out, and the account page."""

from __future__ import annotations

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp.accounts.forms import SignInForm, SignOutForm
from idp.accounts.service import AccountDisabled, AccountExpired, InvalidCredentials, SignInContext
from idp.extensions import db
from idp.oauth.pending import find_pending_request
from idp.runtime import runtime
from idp.web import (
    clear_session_cookie,
    client_ip,
    current_op_session,
    session_cookie_name,
    set_session_cookie,
    user_agent,
)

bp = Blueprint("accounts", __name__)


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> Response | str:
    form = SignInForm()
    if request.method == "GET":
        form.request_id.data = request.args.get("request", "")
    pending = find_pending_request(form.request_id.data)
    if not form.validate_on_submit():
        if request.method == "POST":
            return render_signin(form, pending, error=_("Invalid username or password."))
        return render_signin(form, pending)
    rt = runtime()
    context = SignInContext(ip_address=client_ip(), user_agent=user_agent())
    try:
        account = rt.accounts().authenticate(form.username.data, form.password.data, context)
    except InvalidCredentials:
        db.session.commit()  # keep the audit event
        return render_signin(form, pending, error=_("Invalid username or password."))
    except AccountExpired:
        db.session.commit()
        return render_signin(form, pending, error=_("This account has expired."))
    except AccountDisabled:
        db.session.commit()
        return render_signin(form, pending, error=_("This account is disabled."))
    sessions = rt.sessions()
    # Session fixation: whatever session the browser had, it gets a new id now.
    sessions.end(request.cookies.get(session_cookie_name()))
    started = sessions.start(account, ip_address=context.ip_address, user_agent=context.user_agent)
    db.session.commit()
    target = (
        url_for("oauth.continue_authorization", request_id=pending.id)
        if pending is not None
        else url_for("accounts.account")
    )
    response = redirect(target, code=303)
    set_session_cookie(response, started.cookie_value)
    return response


def render_signin(form: SignInForm, pending: object, error: str | None = None) -> Response:
    form.password.data = ""
    client_name = getattr(pending, "client_name", None)
    body = render_template("signin.html", form=form, error=error, client_name=client_name)
    return make_response(body, 200)


@bp.get("/account")
def account() -> Response | str:
    op_session = current_op_session()
    if op_session is None:
        return redirect(url_for("accounts.signin"), code=303)
    current = op_session.account
    students = runtime().guardianship().linked_students(current)
    db.session.commit()
    return render_template("account.html", account=current, students=students, form=SignOutForm())


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Response | str:
    form = SignOutForm()
    if request.method == "POST" and form.validate_on_submit():
        runtime().sessions().end(request.cookies.get(session_cookie_name()))
        db.session.commit()
        response = make_response(render_template("signed_out.html"))
        clear_session_cookie(response)
        return response
    return render_template("logout.html", form=form)
