"""Hosted page: "Change Your Password" (/signin/change-password), the forced change at sign-in."""

from __future__ import annotations

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp.accounts.change_ticket import ChangeTicket
from idp.accounts.lockout import LockedOut
from idp.accounts.password_policy import ChangeReason
from idp.accounts.preferences import ChangeRefused
from idp.accounts.views.forms import ChangeYourPasswordForm
from idp.accounts.views.messages import describe, password_requirements
from idp.accounts.views.signin import locked_message, signed_in_response
from idp.web.context import browser_session, deliver_mail_now, services, signin_context
from idp.web.cookies import change_ticket_cookie_name, clear_cookie

bp = Blueprint("password_change", __name__)


@bp.route("/signin/change-password", methods=["GET", "POST"])
def change_password() -> Response:
    ticket = services().change_tickets().read(request.cookies.get(change_ticket_cookie_name()))
    if ticket is None:
        flash(_("Sign in again to change your password."))
        return redirect(url_for("accounts.signin"), code=303)
    form = ChangeYourPasswordForm()
    if request.method == "GET":
        return render_change(ticket, form)
    if not form.validate_on_submit():
        return render_change(ticket, form, error=_("The form has expired. Please try again."), status=400)
    pending = services().pending_requests().find(ticket.request_id)
    context = signin_context(pending.client_id if pending is not None else None)
    try:
        signed_in = (
            services()
            .signin()
            .change_password(
                ticket.account,
                current=form.current_password.data or "",
                new=form.new_password.data or "",
                confirm=form.confirm_password.data or "",
                context=context,
                browser_session=browser_session(),
            )
        )
    except ChangeRefused as refused:
        return render_change(ticket, form, problems=describe(refused.problems), status=400)
    except LockedOut as locked:
        return render_change(ticket, form, error=locked_message(locked), status=429)
    response = signed_in_response(signed_in, pending)
    clear_cookie(response, change_ticket_cookie_name())
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
    rules = services().password_policies().rules_for_account(ticket.account)
    body = render_template(
        "change_password.html",
        form=form,
        reason=reason,
        error=error,
        problems=problems or {},
        password_requirements=password_requirements(rules),
    )
    return make_response(body, status)
