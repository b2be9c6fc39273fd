"""Forms of the hosted account pages (Flask-WTF adds the CSRF token)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired


class SignInForm(FlaskForm):  # type: ignore[misc]
    username = StringField(_l("Username"), validators=[DataRequired()])
    password = PasswordField(_l("Password"), validators=[DataRequired()])
    request_id = HiddenField()


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
