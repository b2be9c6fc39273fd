"""Hosted pages: a guardian's invitation (/invitations/<token>), accepted signed in or with a new account."""

from __future__ import annotations

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import PasswordField, StringField

from idp.accounts.models import AccountType
from idp.accounts.registration import Problems, RegistrationRefused
from idp.accounts.views.messages import describe, password_requirements
from idp.students.invitations import (
    InvitationExpired,
    InvitationInvalid,
    InvitationUsed,
    InvitationView,
    InvitedRegistration,
    NotAParent,
)
from idp.web.context import client_ip, current_op_session, deliver_mail_now, services

bp = Blueprint("invitations", __name__)


class AcceptForm(FlaskForm):  # type: ignore[misc]
    """Only the CSRF token: accepting is one button."""


class InvitedAccountForm(FlaskForm):  # type: ignore[misc]
    first_name = StringField()
    last_name = StringField()
    email = StringField()
    username = StringField()
    password = PasswordField()
    password_confirm = PasswordField()


def _refused(error: Exception) -> Response:
    """The page for a link that cannot be used: expired (with the Access ID path), used, or unknown."""
    if isinstance(error, InvitationExpired):
        message = _(
            "This invitation has expired. Ask your school for a new one, or create an account with "
            "the Access ID and Access Password from your school's letter."
        )
        body = render_template("invitation_refused.html", message=message, expired=True)
        return make_response(body, 410)
    if isinstance(error, InvitationUsed):
        message = _("This invitation has been used already. Sign in to see your students.")
    else:
        message = _("This invitation link is not valid: a newer invitation may have replaced it.")
    return make_response(render_template("invitation_refused.html", message=message, expired=False), 404)


@bp.get("/invitations/<token>")
def invitation(token: str) -> Response:
    try:
        view = services().guardian_invitations().find(token)
    except (InvitationInvalid, InvitationExpired) as refused:
        return _refused(refused)
    return _render(token, view)


def _render(token: str, view: InvitationView, *, error: str | None = None, status: int = 200) -> Response:
    op_session = current_op_session()
    account = op_session.account if op_session is not None else None
    body = render_template(
        "invitation.html",
        token=token,
        invitation=view,
        account=account,
        is_parent=account is not None and account.type is AccountType.PARENT,
        form=AcceptForm(),
        error=error,
    )
    response = make_response(body, status)
    # The page's address holds the token: no cache keeps it, no other site is told it.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.post("/invitations/<token>")
def accept(token: str) -> Response:
    """Link the invitation's students to the signed-in parent's account (the CSRF token was checked)."""
    op_session = current_op_session()
    if op_session is None:
        return redirect(
            url_for("accounts.signin", next=url_for("invitations.invitation", token=token)), code=303
        )
    if op_session.emulated_by is not None:
        message = _("You are viewing this account as district staff: its students cannot be changed here.")
        return make_response(render_template("invitation_refused.html", message=message, expired=False), 403)
    invitations = services().guardian_invitations()
    try:
        accepted = invitations.accept(token, op_session.account, ip_address=client_ip())
    except NotAParent:
        try:
            view = invitations.find(token)
        except (InvitationInvalid, InvitationExpired) as refused:
            return _refused(refused)
        message = _("Sign in with a parent's account to accept this invitation.")
        return _render(token, view, error=message, status=403)
    except (InvitationInvalid, InvitationExpired) as refused:
        return _refused(refused)
    deliver_mail_now()
    names = ", ".join(student.first_name for student in accepted.students)
    flash(
        ngettext(
            "%(names)s is now linked to your account.",
            "%(names)s are now linked to your account.",
            len(accepted.students),
            names=names,
        )
    )
    return redirect(url_for("preferences.students"), code=303)


@bp.route("/invitations/<token>/account", methods=["GET", "POST"])
def create_account(token: str) -> Response:
    """Create Account for an invited guardian: no Access ID, the invitation names the students."""
    invitations = services().guardian_invitations()
    try:
        view = invitations.find(token)
    except (InvitationInvalid, InvitationExpired) as refused:
        return _refused(refused)
    form = InvitedAccountForm()
    if request.method == "GET":
        form.first_name.data, form.last_name.data, form.email.data = (
            view.first_name,
            view.last_name,
            view.email,
        )
        return _render_account(token, view, form)
    entry = InvitedRegistration(
        first_name=form.first_name.data or "",
        last_name=form.last_name.data or "",
        email=form.email.data or "",
        username=form.username.data or "",
        password=form.password.data or "",
        password_confirm=form.password_confirm.data or "",
        ip_address=client_ip(),
    )
    try:
        accepted = invitations.register(token, entry)
    except RegistrationRefused as refused:
        return _render_account(token, view, form, refused.problems, status=400)
    except (InvitationInvalid, InvitationExpired) as refused:
        return _refused(refused)
    deliver_mail_now()
    body = render_template(
        "invitation_done.html",
        students=accepted.students,
        verified=accepted.account.email_verified_at is not None,
    )
    return make_response(body, 200)


def _render_account(
    token: str,
    view: InvitationView,
    form: InvitedAccountForm,
    problems: Problems | None = None,
    status: int = 200,
) -> Response:
    problems = problems or Problems()
    form.password.data = form.password_confirm.data = ""
    rules = problems.rules or services().password_policies().district_default()
    body = render_template(
        "invitation_account.html",
        token=token,
        invitation=view,
        form=form,
        problems=describe(problems),
        has_problems=bool(problems),
        password_requirements=password_requirements(rules),
    )
    response = make_response(body, status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
