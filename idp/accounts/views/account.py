"""Hosted pages: Account Preferences (/account): a Profile tab and a Students tab."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp.accounts.lockout import LockedOut
from idp.accounts.models import Account
from idp.accounts.preferences import ChangeNotAllowed, ChangeRefused
from idp.accounts.registration import Problems
from idp.accounts.verification import TooManyVerificationMails
from idp.accounts.views.forms import (
    AddStudentForm,
    EmailForm,
    LanguageForm,
    NameForm,
    PasswordForm,
    PrimaryStudentForm,
    SignOutForm,
    UsernameForm,
    offer_relationships,
)
from idp.accounts.views.messages import describe, password_requirements, row_message
from idp.accounts.views.signin import locked_message
from idp.students.guardianship import UnknownStudent
from idp.web import remember_language, select_locale
from idp.web.context import client_ip, current_op_session, deliver_mail_now, services, signin_context
from idp.web.cookies import portal_cookie_name, set_cookie

bp = Blueprint("preferences", __name__)

EDITABLE = ("name", "email", "username", "password")


def _signed_in() -> Account | None:
    op_session = current_op_session()
    return op_session.account if op_session is not None else None


def _to_signin() -> Response:
    return redirect(url_for("accounts.signin"), code=303)


@bp.context_processor
def _back_to_portal() -> dict[str, Any]:
    """ "Back to <portal>": the portal named by ``?client_id=`` or remembered from it, if registered."""
    client_id = request.args.get("client_id") or request.cookies.get(portal_cookie_name()) or ""
    return {"back_to_portal": services().clients().home_of(client_id)}


@bp.get("/account")
def account() -> Response:
    current = _signed_in()
    editing = request.args.get("edit", "")
    # A sign-in without an authorization request lands back here, so the portal is remembered too.
    response = (
        _to_signin() if current is None else render_profile(current, editing if editing in EDITABLE else "")
    )
    client_id = request.args.get("client_id", "")
    if client_id and services().clients().home_of(client_id) is not None:
        # Remembered for the other Account Preferences pages (their forms redirect without it).
        set_cookie(response, portal_cookie_name(), client_id[:64])
    return response


def render_profile(
    current: Account,
    editing: str = "",
    *,
    form: Any = None,
    problems: Problems | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    options = services().district_options().current()
    forms = {
        "name": NameForm(formdata=None, first_name=current.first_name, last_name=current.last_name),
        "email": EmailForm(formdata=None, email=current.email),
        "username": UsernameForm(formdata=None, username=current.username),
        "password": PasswordForm(formdata=None),
        "language": LanguageForm(formdata=None, language=current.locale or select_locale()),
    }
    if form is not None:
        forms[editing] = form
    rules = services().password_policies().rules_for_account(current)
    body = render_template(
        "account_profile.html",
        account=current,
        editing=editing,
        forms=forms,
        options=options,
        problems=describe(problems) if problems else {},
        error=error,
        password_requirements=password_requirements(rules),
        signout_form=SignOutForm(),
        tab="profile",
    )
    return make_response(body, status)


def _not_allowed(current: Account, editing: str, form: Any) -> Response:
    message = (
        _("Your district does not allow changing the email address here. Contact your school.")
        if editing == "email"
        else _("Your district does not allow changing the password here. Contact your school.")
    )
    return render_profile(current, editing, form=form, error=message, status=403)


def _saved(message: str, tab: str = "profile") -> Response:
    deliver_mail_now()
    flash(message)
    target = url_for("preferences.students") if tab == "students" else url_for("preferences.account")
    return redirect(target, code=303)


@bp.post("/account/name")
def change_name() -> Response:
    current = _signed_in()
    if current is None:
        return _to_signin()
    form = NameForm()
    try:
        services().preferences().change_name(current, form.first_name.data or "", form.last_name.data or "")
    except ChangeRefused as refused:
        return render_profile(current, "name", form=form, problems=refused.problems, status=400)
    return _saved(_("Your name was saved."))


@bp.post("/account/language")
def change_language() -> Response:
    current = _signed_in()
    if current is None:
        return _to_signin()
    form = LanguageForm()
    chosen = form.language.data or ""
    try:
        services().preferences().change_language(current, chosen, services().settings.languages)
    except ChangeRefused as refused:
        return render_profile(current, "language", form=form, problems=refused.problems, status=400)
    with force_locale(chosen):
        response = _saved(_("Your language was saved."))
    # The pages follow the account's language from now on in this browser, as the selector would.
    remember_language(response, chosen)
    return response


@bp.post("/account/email")
def change_email() -> Response:
    current = _signed_in()
    if current is None:
        return _to_signin()
    form = EmailForm()
    try:
        changed = services().preferences().change_email(current, form.email.data or "")
    except ChangeRefused as refused:
        return render_profile(current, "email", form=form, problems=refused.problems, status=400)
    except ChangeNotAllowed:
        return _not_allowed(current, "email", form)
    if not changed:
        return _saved(_("Your email address is unchanged."))
    return _saved(_("Your email address was changed. We sent a link to the new address to verify it."))


@bp.post("/account/username")
def change_username() -> Response:
    current = _signed_in()
    if current is None:
        return _to_signin()
    form = UsernameForm()
    try:
        services().preferences().change_username(current, form.username.data or "")
    except ChangeRefused as refused:
        return render_profile(current, "username", form=form, problems=refused.problems, status=400)
    return _saved(_("Your username was changed."))


@bp.post("/account/password")
def change_password() -> Response:
    current = _signed_in()
    if current is None:
        return _to_signin()
    form = PasswordForm()
    sign_out_others = bool(form.sign_out_others.data)
    try:
        services().preferences().change_password(
            current,
            current=form.current_password.data or "",
            new=form.new_password.data or "",
            confirm=form.confirm_password.data or "",
            context=signin_context(),
            sign_out_others=sign_out_others,
            keep=current_op_session(),
        )
    except ChangeRefused as refused:
        return render_profile(
            current, "password", form=PasswordForm(formdata=None), problems=refused.problems, status=400
        )
    except ChangeNotAllowed:
        return _not_allowed(current, "password", PasswordForm(formdata=None))
    except LockedOut as locked:
        return render_profile(
            current, "password", form=PasswordForm(formdata=None), error=locked_message(locked), status=429
        )
    if sign_out_others:
        return _saved(_("Your password was changed, and your other devices were signed out."))
    return _saved(_("Your password was changed."))


@bp.post("/account/verification")
def resend_verification() -> Response:
    current = _signed_in()
    if current is None:
        return _to_signin()
    SignOutForm()  # the CSRF token was checked before the view
    try:
        sent = services().preferences().resend_verification(current)
    except TooManyVerificationMails:
        return render_profile(
            current, error=_("We have sent several links lately. Wait a while, then try again."), status=429
        )
    if not sent:
        return _saved(_("Your email address is already verified."))
    return _saved(_("We sent a new verification link to %(email)s.", email=current.email))


# --- Students tab -------------------------------------------------------------------------
@bp.get("/account/students")
def students() -> Response:
    current = _signed_in()
    if current is None:
        return _to_signin()
    return render_students(current)


def render_students(
    current: Account, *, form: AddStudentForm | None = None, row_error: str | None = None, status: int = 200
) -> Response:
    options = services().district_options().current()
    add_form = form or AddStudentForm(formdata=None)
    offer_relationships(add_form, options.relationships)
    add_form.access_password.data = ""
    body = render_template(
        "account_students.html",
        account=current,
        students=services().guardianship().linked_students(current),
        add_form=add_form,
        primary_form=PrimaryStudentForm(formdata=None),
        row_error=row_error,
        signout_form=SignOutForm(),
        tab="students",
    )
    return make_response(body, status)


@bp.post("/account/students")
def add_student() -> Response:
    current = _signed_in()
    if current is None:
        return _to_signin()
    form = AddStudentForm()
    try:
        student = services().preferences().add_student(current, form.entry(), ip_address=client_ip())
    except ChangeRefused as refused:
        problems = refused.problems
        row = problems.rows.get(0)
        message = (
            row_message(row) if row is not None else _("Enter the student's Access ID and Access Password.")
        )
        response = render_students(
            current, form=form, row_error=message, status=429 if problems.rate_limited else 400
        )
        if row is not None and problems.rate_limited:
            response.headers["Retry-After"] = str(row.minutes * 60)
        return response
    return _saved(
        _("%(name)s is now linked to your account.", name=f"{student.first_name} {student.last_name}"),
        "students",
    )


@bp.post("/account/students/primary")
def choose_primary() -> Response:
    current = _signed_in()
    if current is None:
        return _to_signin()
    form = PrimaryStudentForm()
    try:
        student = services().preferences().choose_primary(current, (form.student.data or "")[:64])
    except UnknownStudent:
        return render_students(current, row_error=_("Choose one of your linked students."), status=400)
    return _saved(
        _("%(name)s is now your primary student.", name=f"{student.first_name} {student.last_name}"),
        "students",
    )
