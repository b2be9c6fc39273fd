"""Hosted pages: Create Account (/register) and email verification (/verify/…)."""

from __future__ import annotations

from contextlib import suppress

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from idp.accounts.messages import describe, password_requirements, row_message
from idp.accounts.models import AccountStatus
from idp.accounts.password_policy import PasswordRules
from idp.accounts.registration import (
    MAX_STUDENT_ROWS,
    Problem,
    Problems,
    Registration,
    RegistrationRefused,
)
from idp.accounts.registration_forms import RegisterForm, ResendForm, offer_relationships
from idp.accounts.usernames import MAX_USERNAME_LENGTH
from idp.accounts.verification import (
    InvalidVerificationLink,
    TooManyVerificationMails,
    VerificationLinkExpired,
)
from idp.accounts.wiring import (
    deliver_mail_now,
    district_options,
    email_verification,
    password_policies,
    registration,
)
from idp.extensions import db
from idp.limits import limit_register
from idp.runtime import runtime
from idp.web import client_ip

bp = Blueprint("registration", __name__)


@bp.route("/register", methods=["GET", "POST"])
@limit_register
def register() -> Response:
    options = district_options()
    form = RegisterForm()
    for row in form.students:
        offer_relationships(row.form, options.relationships)
    if request.method == "GET":
        form.request_id.data = request.args.get("request", "")[:64]
        return render_register(form, password_policies().district_default())
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
    )
    try:
        registration(options).register(entry)
        db.session.commit()
    except RegistrationRefused as refused:
        db.session.commit()  # only the audit events of failed Access ID checks were written
        problems = refused.problems
        status = 429 if problems.rate_limited else 400
        return render_register(
            form, problems.rules or password_policies().district_default(), problems, status
        )
    except IntegrityError:
        # Another registration took the username (or a look-alike) between the check and the insert.
        db.session.rollback()
        problems = Problems()
        problems.add("username", Problem.USERNAME_TAKEN)
        return render_register(form, password_policies().district_default(), problems, 400)
    deliver_mail_now()
    return redirect(url_for("registration.registered", request=form.request_id.data or None), code=303)


def render_register(
    form: RegisterForm, rules: PasswordRules, problems: Problems | None = None, status: int = 200
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
        password_requirements=password_requirements(rules),
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
        verification_required=district_options().require_email_verification,
    )


@bp.get("/verify/<token>")
def verify(token: str) -> Response:
    try:
        email_verification().verify(token)
    except VerificationLinkExpired:
        return _verify_failed(_("This verification link has expired. Ask for a new one below."))
    except InvalidVerificationLink:
        return _verify_failed(
            _("This verification link is not valid, or your email address has changed since it was sent.")
        )
    db.session.commit()
    return make_response(render_template("verify.html", verified=True))


def _verify_failed(message: str) -> Response:
    db.session.rollback()
    return make_response(render_template("verify.html", verified=False, message=message), 400)


@bp.route("/verify/resend", methods=["GET", "POST"])
@limit_register
def resend() -> Response:
    form = ResendForm()
    if request.method == "GET":
        return make_response(render_template("verify_resend.html", form=form, sent=False))
    typed = form.username.data or ""
    account = None
    # NUL is in no username, and PostgreSQL refuses it in a query parameter.
    if typed and len(typed) <= MAX_USERNAME_LENGTH * 4 and "\x00" not in typed:
        account = runtime().accounts().find_by_username(typed)
    if account is not None and account.status is not AccountStatus.DISABLED:
        # The answer is the same whatever happened: it tells nothing about the account.
        with suppress(TooManyVerificationMails):
            email_verification().send(account, limit=True)
        db.session.commit()
        deliver_mail_now()
    return make_response(render_template("verify_resend.html", form=ResendForm(formdata=None), sent=True))
