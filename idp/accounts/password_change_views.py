"""Hosted page: "Change Your Password" (/signin/change-password), the forced change at sign-in."""

from __future__ import annotations

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp.accounts.change_ticket import ChangeTicket, clear_ticket, read_ticket
from idp.accounts.forms import ChangeYourPasswordForm
from idp.accounts.lockout import LockedOut
from idp.accounts.messages import describe, password_requirements
from idp.accounts.password_policy import ChangeReason
from idp.accounts.preferences import ChangeRefused
from idp.accounts.views import finish_signin, locked_message
from idp.accounts.wiring import deliver_mail_now, password_policies, preferences
from idp.extensions import db
from idp.limits import limit_signin
from idp.runtime import runtime
from idp.web import signin_context

bp = Blueprint("password_change", __name__)


@bp.route("/signin/change-password", methods=["GET", "POST"])
@limit_signin
def change_password() -> Response:
    ticket = read_ticket()
    if ticket is None:
        flash(_("Sign in again to change your password."))
        return redirect(url_for("accounts.signin"), code=303)
    form = ChangeYourPasswordForm()
    if request.method == "GET":
        return render_change(ticket, form)
    if not form.validate_on_submit():
        return render_change(ticket, form, error=_("The form has expired. Please try again."), status=400)
    context = signin_context()
    try:
        preferences().change_password(
            ticket.account,
            current=form.current_password.data or "",
            new=form.new_password.data or "",
            confirm=form.confirm_password.data or "",
            context=context,
            required=True,
        )
    except ChangeRefused as refused:
        db.session.commit()  # keep the audit of a wrong current password
        return render_change(ticket, form, problems=describe(refused.problems), status=400)
    except LockedOut as locked:
        db.session.commit()
        return render_change(ticket, form, error=locked_message(locked), status=429)
    runtime().accounts().record_signin(ticket.account, context)
    response = finish_signin(ticket.account, ticket.request_id)
    clear_ticket(response)
    deliver_mail_now()
    return response


def render_change(
    ticket: ChangeTicket,
    form: ChangeYourPasswordForm,
    *,
    problems: dict[str, list[str]] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    form.current_password.data = form.new_password.data = form.confirm_password.data = ""
    reason = (
        _("Your password has expired. Choose a new password to continue.")
        if ticket.reason is ChangeReason.EXPIRED
        else _("Your password is temporary. Choose a new password to continue.")
    )
    rules = password_policies().rules_for_account(ticket.account)
    body = render_template(
        "change_password.html",
        form=form,
        reason=reason,
        error=error,
        problems=problems or {},
        password_requirements=password_requirements(rules),
    )
    db.session.commit()
    return make_response(body, status)
