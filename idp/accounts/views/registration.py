"""Hosted pages: Create Account (/register) and email verification (/verify/…)."""

from __future__ import annotations

from dataclasses import replace

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp.accounts.password_policy import PasswordRules
from idp.accounts.registration import MAX_STUDENT_ROWS, Problems, Registration, RegistrationRefused
from idp.accounts.usernames import MAX_USERNAME_LENGTH
from idp.accounts.verification import InvalidVerificationLink, VerificationLinkExpired
from idp.accounts.views.forms import RegisterForm, ResendForm, offer_relationships
from idp.accounts.views.messages import describe, password_requirements, row_message
from idp.web.context import client_ip, deliver_mail_now, services

bp = Blueprint("registration", __name__)


@bp.route("/register", methods=["GET", "POST"])
def register() -> Response:
    options = services().district_options().current()
    form = RegisterForm()
    for row in form.students:
        offer_relationships(row.form, options.relationships)
    if request.method == "GET":
        form.request_id.data = request.args.get("request", "")[:64]
        return render_register(form, services().password_policies().strictest_possible())
    # CSRF was checked before the view (CSRFProtect); the services check everything else.
    entry = Registration(
        first_name=form.first_name.data or "",
        last_name=form.last_name.data or "",
        email=form.email.data or "",
        username=form.username.data or "",
        password=form.password.data or "",
        password_confirm=form.password_confirm.data or "",
        students=tuple(row.form.entry() for row in form.students),
        ip_address=client_ip(),
        locale=str(get_locale() or "") or None,
    )
    try:
        services().registration(options).register(entry)
    except RegistrationRefused as refused:
        problems = refused.problems
        # The students' schools' rules once their Access IDs are recognised, else the strictest.
        narrowed = problems.rules is not None
        rules = problems.rules or services().password_policies().strictest_possible()
        status = 429 if problems.rate_limited else 400
        return render_register(form, rules, problems, status, narrowed=narrowed)
    deliver_mail_now()
    return redirect(url_for("registration.registered", request=form.request_id.data or None), code=303)


def render_register(
    form: RegisterForm,
    rules: PasswordRules,
    problems: Problems | None = None,
    status: int = 200,
    *,
    narrowed: bool = False,
) -> Response:
    problems = problems or Problems()
    # Passwords are never sent back.
    form.password.data = form.password_confirm.data = ""
    body = render_template(
        "register.html",
        form=form,
        problems=describe(problems),
        has_problems=bool(problems),
        row_problems={index: row_message(row) for index, row in problems.rows.items()},
        # A new account has no earlier passwords: the history rule says nothing to it.
        password_requirements=password_requirements(replace(rules, history_count=0)),
        rules_narrowed=narrowed,
        max_rows=MAX_STUDENT_ROWS,
        max_username=MAX_USERNAME_LENGTH,
    )
    response = make_response(body, status)
    if problems.rate_limited:
        minutes = max(row.minutes for row in problems.rows.values())
        response.headers["Retry-After"] = str(minutes * 60)
    return response


@bp.get("/register/done")
def registered() -> str:
    return render_template(
        "registered.html",
        request_id=request.args.get("request", "")[:64],
        verification_required=services().district_options().current().require_email_verification,
    )


@bp.get("/verify/<token>")
def verify(token: str) -> Response:
    try:
        services().email_verification().verify(token)
    except VerificationLinkExpired:
        return _verify_failed(_("This verification link has expired. Ask for a new one below."))
    except InvalidVerificationLink:
        return _verify_failed(
            _("This verification link is not valid, or your email address has changed since it was sent.")
        )
    return make_response(render_template("verify.html", verified=True))


def _verify_failed(message: str) -> Response:
    return make_response(render_template("verify.html", verified=False, message=message), 400)


@bp.route("/verify/resend", methods=["GET", "POST"])
def resend() -> Response:
    form = ResendForm()
    if request.method == "GET":
        return make_response(render_template("verify_resend.html", form=form, sent=False))
    # The answer is the same whatever happened: it tells nothing about the account.
    services().email_verification().resend_to(form.username.data or "")
    deliver_mail_now()
    return make_response(render_template("verify_resend.html", form=ResendForm(formdata=None), sent=True))
