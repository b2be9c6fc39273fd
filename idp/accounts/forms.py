"""Forms of the hosted account pages (Flask-WTF adds the CSRF token)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired


class SignInForm(FlaskForm):  # type: ignore[misc]
    username = StringField(_l("Username"), validators=[DataRequired()])
    password = PasswordField(_l("Password"), validators=[DataRequired()])
    request_id = HiddenField()


@dataclass(frozen=True)
class SignInPost:
    username: str
    password: str
    request_id: str


def read_signin_post(formdata: Mapping[str, str]) -> SignInPost | None:
    """Return a sign-in POST's fields if ``SignInForm`` would accept them, else None.

    A sign-in that succeeds only redirects: building its form (four fields bound, a CSRF token
    signed for a page nobody sees) cost every sign-in half a millisecond in the worker.
    CSRFProtect has checked the token before the view runs; the form is built only to show the
    page again.
    """
    # As WTForms reads them: the first value of each field; DataRequired refuses blank text.
    username, password = formdata.get("username", ""), formdata.get("password", "")
    if not username.strip() or not password.strip():
        return None
    return SignInPost(username, password, formdata.get("request_id", ""))


class SignOutForm(FlaskForm):  # type: ignore[misc]
    pass


class ForgotPasswordForm(FlaskForm):  # type: ignore[misc]
    username = StringField(_l("Username"), validators=[DataRequired()])
    email = StringField(_l("Email"), validators=[DataRequired()])
    request_id = HiddenField()


class ForgotUsernameForm(FlaskForm):  # type: ignore[misc]
    email = StringField(_l("Email"), validators=[DataRequired()])
    request_id = HiddenField()


class RecoverPasswordForm(FlaskForm):  # type: ignore[misc]
    username = StringField(_l("Username"))
    new_password = PasswordField(_l("New password"))
    confirm_password = PasswordField(_l("Re-enter new password"))


class ChangeYourPasswordForm(FlaskForm):  # type: ignore[misc]
    current_password = PasswordField(_l("Current password"))
    new_password = PasswordField(_l("New password"))
    confirm_password = PasswordField(_l("Re-enter new password"))
