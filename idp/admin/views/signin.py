"""Console pages: staff sign-in, the second factor, the first sign-in's password change and TOTP
enrolment, re-authentication for sensitive actions, sign-out, and the console's home."""

from __future__ import annotations

from flask import flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp.accounts.lockout import LockedOut
from idp.accounts.preferences import ChangeRefused
from idp.accounts.service import (
    AccountDisabled,
    AccountExpired,
    InvalidCredentials,
    SignInContext,
    TemporaryPasswordExpired,
)
from idp.accounts.views.messages import describe, password_requirements
from idp.accounts.views.signin import locked_message
from idp.admin.staff import Console, NotEnrolled, Step, WrongCode
from idp.admin.views.common import (
    bp,
    current_console,
    find_console,
    forget_console,
    safe_next,
    staff_cookie,
    staff_page,
    step_redirect,
)
from idp.admin.views.forms import CodeForm, ReauthForm, StaffPasswordForm, StaffSignInForm
from idp.web.context import client_ip, services, user_agent
from idp.web.cookies import clear_cookie, set_cookie, staff_cookie_name

__all__ = ["bp"]


def staff_context() -> SignInContext:
    # No device cookie: those vouch for parents' browsers, never for a console sign-in.
    return SignInContext(ip_address=client_ip(), user_agent=user_agent())


def _wrong_code() -> str:
    return str(_("That code is not right, has expired, or was already used."))


def _onward(next_path: str | None) -> Response:
    """After a step: the next step if one is left, else where the staff member was going."""
    forget_console()
    console = find_console()
    if console is None:
        return redirect(url_for("admin.signin"), code=303)
    if console.step is not Step.READY:
        return step_redirect(console)
    return redirect(safe_next(next_path) or url_for("admin.home"), code=303)


def _at_step(step: Step) -> Console | Response:
    """The console session if it is at ``step``; else where it should go instead."""
    console = find_console()
    if console is None:
        return redirect(url_for("admin.signin"), code=303)
    if console.step is not step:
        return _onward(None) if console.step is Step.READY else step_redirect(console)
    return console


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> Response:
    form = StaffSignInForm()
    if request.method == "GET":
        console = find_console()
        if console is not None and console.step is Step.READY:
            return redirect(safe_next(request.args.get("next")) or url_for("admin.home"), code=303)
        form.next.data = safe_next(request.args.get("next")) or ""
        return _render_signin(form)
    if not form.validate_on_submit():
        return _render_signin(form, _("Invalid username or password."))
    try:
        started = services().staff().sign_in(form.username.data, form.password.data or "", staff_context())
    except InvalidCredentials:
        return _render_signin(form, _("Invalid username or password."))
    except LockedOut as locked:
        return _render_signin(form, locked_message(locked))
    except AccountDisabled:
        return _render_signin(form, _("This account is disabled."))
    except AccountExpired:
        return _render_signin(form, _("This account has expired."))
    except TemporaryPasswordExpired:
        return _render_signin(
            form, _("This temporary password has expired. Ask a district administrator for a new one.")
        )
    # A new session id at every sign-in: the browser's previous console session ends here.
    services().staff().sign_out(staff_cookie())
    console = started.console
    next_path = safe_next(form.next.data)
    if console.step is Step.CODE:
        target = url_for("admin.signin_code", next=next_path)
    elif console.step is Step.READY:  # only where no second factor is asked (never today)
        target = next_path or url_for("admin.home")
    else:
        target = url_for("admin.change_password" if console.step is Step.CHANGE_PASSWORD else "admin.enrol")
    response = redirect(target, code=303)
    set_cookie(response, staff_cookie_name(), started.cookie_value)
    return response


def _render_signin(form: StaffSignInForm, error: str | None = None) -> Response:
    form.password.data = ""
    return make_response(render_template("admin/signin.html", form=form, error=error))


@bp.route("/signin/code", methods=["GET", "POST"])
def signin_code() -> Response:
    console = _at_step(Step.CODE)
    if isinstance(console, Response):
        return console
    form = CodeForm()
    if request.method == "GET":
        form.next.data = safe_next(request.args.get("next")) or ""
        return _render_code(form)
    if not form.validate_on_submit():
        return _render_code(form, _wrong_code())
    try:
        services().staff().verify_code(console, form.code.data or "", staff_context())
    except WrongCode:
        return _render_code(form, _wrong_code())
    except LockedOut as locked:
        return _render_code(form, locked_message(locked))
    return _onward(form.next.data)


def _render_code(form: CodeForm, error: str | None = None) -> Response:
    form.code.data = ""
    return make_response(render_template("admin/signin_code.html", form=form, error=error))


@bp.route("/signin/change-password", methods=["GET", "POST"])
def change_password() -> Response:
    console = _at_step(Step.CHANGE_PASSWORD)
    if isinstance(console, Response):
        return console
    form = StaffPasswordForm()
    if request.method == "GET":
        return _render_password(console, form)
    if not form.validate_on_submit():
        return _render_password(console, form, error=_("The form has expired. Please try again."))
    try:
        services().staff().change_password(
            console,
            current=form.current_password.data or "",
            new=form.new_password.data or "",
            confirm=form.confirm_password.data or "",
            context=staff_context(),
        )
    except ChangeRefused as refused:
        return _render_password(console, form, problems=describe(refused.problems))
    except LockedOut as locked:
        return _render_password(console, form, error=locked_message(locked))
    flash(_("Your password has been changed."))
    return _onward(None)


def _render_password(
    console: Console,
    form: StaffPasswordForm,
    *,
    problems: dict[str, list[str]] | None = None,
    error: str | None = None,
) -> Response:
    form.current_password.data = form.new_password.data = form.confirm_password.data = ""
    rules = services().password_policies().rules_for_account(console.account)
    body = render_template(
        "admin/signin_password.html",
        form=form,
        error=error,
        problems=problems or {},
        password_requirements=password_requirements(rules),
    )
    return make_response(body, 400 if problems or error else 200)


@bp.route("/enrol", methods=["GET", "POST"])
def enrol() -> Response:
    console = _at_step(Step.ENROL)
    if isinstance(console, Response):
        return console
    form = CodeForm()
    if request.method == "POST" and form.validate_on_submit():
        try:
            codes = services().staff().confirm_enrolment(console, form.code.data or "", staff_context())
        except WrongCode:
            return _render_enrol(console, form, _wrong_code())
        except LockedOut as locked:
            return _render_enrol(console, form, locked_message(locked))
        # Shown once, in this answer only (no-store): they are kept hashed.
        return make_response(render_template("admin/enrol_done.html", codes=codes))
    error = _("The form has expired. Please try again.") if request.method == "POST" else None
    return _render_enrol(console, form, error)


def _render_enrol(console: Console, form: CodeForm, error: str | None = None) -> Response:
    form.code.data = ""
    enrolment = services().staff().enrolment(console)
    body = render_template("admin/enrol.html", form=form, enrolment=enrolment, error=error)
    return make_response(body, 400 if error else 200)


@bp.route("/reauth", methods=["GET", "POST"])
@staff_page()
def reauth() -> Response:
    form = ReauthForm()
    if request.method == "GET":
        form.next.data = safe_next(request.args.get("next")) or ""
        return _render_reauth(form)
    if not form.validate_on_submit():
        return _render_reauth(form, _("The form has expired. Please try again."))
    try:
        services().staff().prove_again(
            current_console(), form.password.data or "", form.code.data or "", staff_context()
        )
    except InvalidCredentials:
        return _render_reauth(form, _("The password is not right."))
    except (WrongCode, NotEnrolled):
        return _render_reauth(form, _wrong_code())
    except LockedOut as locked:
        return _render_reauth(form, locked_message(locked))
    return redirect(safe_next(form.next.data) or url_for("admin.home"), code=303)


def _render_reauth(form: ReauthForm, error: str | None = None) -> Response:
    form.password.data = form.code.data = ""
    body = render_template("admin/reauth.html", form=form, error=error)
    return make_response(body, 400 if error else 200)


@bp.route("/signout", methods=["POST"])
def signout() -> Response:
    services().staff().sign_out(staff_cookie())
    flash(_("You are signed out of the console."))
    response = redirect(url_for("admin.signin"), code=303)
    clear_cookie(response, staff_cookie_name())
    return response


@bp.route("/", methods=["GET"])
@staff_page()
def home() -> Response:
    return make_response(render_template("admin/home.html", actor=current_console().actor))
