"""Hosted pages: "Having trouble signing in?" (/signin/trouble) and Recover Password (/reset/<token>)."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, make_response, render_template, request
from flask_babel import gettext as _
from flask_babel import ngettext
from werkzeug.wrappers import Response

from idp.accounts.models import Account
from idp.accounts.recovery import (
    InvalidRecoveryLink,
    RecoveryLinkExpired,
    ResetRefused,
    UsernameMismatch,
)
from idp.accounts.registration import account_password_context
from idp.accounts.views.forms import ForgotPasswordForm, ForgotUsernameForm, RecoverPasswordForm
from idp.accounts.views.messages import password_message, password_requirements
from idp.accounts.views.signin import signed_in_response
from idp.counters.store import whole_minutes
from idp.web.context import browser_session, client_ip, services, signin_context

bp = Blueprint("recovery", __name__)

TABS = ("password", "username")


@bp.get("/signin/trouble")
def trouble() -> Response:
    tab = request.args.get("tab", "password")
    return render_trouble(tab if tab in TABS else "password", request.args.get("request", ""))


def render_trouble(
    tab: str,
    request_id: str,
    *,
    error: str | None = None,
    status: int = 200,
    submitted: ForgotPasswordForm | ForgotUsernameForm | None = None,
) -> Response:
    # A refused form comes back with what was typed in it; the other tab's form starts empty.
    password_form = (
        submitted
        if isinstance(submitted, ForgotPasswordForm)
        else ForgotPasswordForm(formdata=None, request_id=request_id)
    )
    username_form = (
        submitted
        if isinstance(submitted, ForgotUsernameForm)
        else ForgotUsernameForm(formdata=None, request_id=request_id)
    )
    body = render_template(
        "trouble.html",
        tab=tab,
        password_form=password_form,
        username_form=username_form,
        request_id=_known_request(request_id),
        error=error,
    )
    return make_response(body, status)


def _known_request(request_id: str | None) -> str | None:
    pending = services().pending_requests().find(request_id)
    return pending.id if pending is not None else None


@bp.post("/signin/trouble/password")
def forgot_password() -> Response:
    form = ForgotPasswordForm()
    if not form.validate_on_submit():
        return render_trouble(
            "password",
            form.request_id.data or "",
            error=_("Enter your username and the email address of your account."),
            status=400,
            submitted=form,
        )
    # The same work whoever asks: one row, looked at later by the worker (idp.accounts.recovery).
    services().recovery().ask_for_password_reset(
        form.username.data,
        form.email.data,
        authorization_request_id=_known_request(form.request_id.data),
        ip_address=client_ip(),
    )
    life = timedelta(seconds=services().settings.recovery_token_seconds)
    message = ngettext(
        "If the username and email address belong to an account, we have sent an email with a link "
        "to reset the password. The link works for %(num)d minute.",
        "If the username and email address belong to an account, we have sent an email with a link "
        "to reset the password. The link works for %(num)d minutes.",
        whole_minutes(life),
    )
    return make_response(render_template("trouble_sent.html", message=message))


@bp.post("/signin/trouble/username")
def forgot_username() -> Response:
    form = ForgotUsernameForm()
    if not form.validate_on_submit():
        return render_trouble(
            "username",
            form.request_id.data or "",
            error=_("Enter the email address of your account."),
            status=400,
            submitted=form,
        )
    services().recovery().ask_for_usernames(form.email.data, ip_address=client_ip())
    message = _("If the email address belongs to any accounts, we have sent their usernames to it.")
    return make_response(render_template("trouble_sent.html", message=message))


@bp.route("/reset/<token>", methods=["GET", "POST"])
def reset(token: str) -> Response:
    service = services().recovery()
    try:
        _row, account = service.open(token)
    except InvalidRecoveryLink:
        return _link_refused(
            _(
                "This password reset link is not valid. It may have been used already, or the "
                "password was changed after it was sent. Ask for a new link."
            )
        )
    except RecoveryLinkExpired:
        return _link_refused(_("This password reset link has expired. Ask for a new link."))
    form = RecoverPasswordForm()
    if request.method == "GET" or not form.validate_on_submit():
        # A POST without a valid CSRF token lands here too: the form again, with a reason.
        error = _("The form has expired. Please try again.") if request.method == "POST" else None
        return render_recover(token, account, form, error=error, status=400 if error else 200)
    options = services().district_options().current()
    try:
        done = service.reset(
            token,
            username=form.username.data or "",
            new=form.new_password.data or "",
            confirm=form.confirm_password.data or "",
            context_words=account_password_context(account, options.name),
        )
    except UsernameMismatch:
        return render_recover(
            token, account, form, error=_("The username is not the one this link was sent for."), status=400
        )
    except ResetRefused as refused:
        messages = [password_message(v, refused.rules) for v in refused.violations]
        return render_recover(token, account, form, password_errors=messages, status=400)
    except InvalidRecoveryLink:  # used by a concurrent submit of the same link
        return _link_refused(_("This password reset link has already been used. Ask for a new link."))
    pending = services().pending_requests().find(done.authorization_request_id)
    signed_in = (
        services()
        .signin()
        .complete(
            done.account,
            context=signin_context(pending.client_id if pending is not None else None),
            browser_session=browser_session(),
            ended_elsewhere=done.ended_sessions,
        )
    )
    return signed_in_response(signed_in, pending)


def render_recover(
    token: str,
    account: Account,
    form: RecoverPasswordForm,
    *,
    error: str | None = None,
    password_errors: list[str] | None = None,
    status: int = 200,
) -> Response:
    form.new_password.data = form.confirm_password.data = ""
    rules = services().recovery().rules_for(account)
    body = render_template(
        "recover_password.html",
        token=token,
        form=form,
        error=error,
        password_errors=password_errors or [],
        password_requirements=password_requirements(rules),
    )
    return make_response(body, status)


def _link_refused(message: str) -> Response:
    body = render_template("error.html", message=message, error="invalid_link", trouble_link=True)
    return make_response(body, 400)
