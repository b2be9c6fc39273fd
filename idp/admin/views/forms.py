"""Forms of the console's own pages (sign-in, second factor, re-authentication): they parse and
carry the CSRF token; the rules live in the services. Other console modules keep their forms."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired


class StaffSignInForm(FlaskForm):  # type: ignore[misc]
    username = StringField(_l("Username"), validators=[DataRequired()])
    # Not required: an empty password is a wrong one, counted by the lockout like any other.
    password = PasswordField(_l("Password"))
    next = HiddenField()


class CodeForm(FlaskForm):  # type: ignore[misc]
    code = StringField(_l("Code"))
    next = HiddenField()


class StaffPasswordForm(FlaskForm):  # type: ignore[misc]
    current_password = PasswordField(_l("Current password"))
    new_password = PasswordField(_l("New password"))
    confirm_password = PasswordField(_l("Re-enter new password"))


class ReauthForm(FlaskForm):  # type: ignore[misc]
    password = PasswordField(_l("Password"))
    code = StringField(_l("Code"))
    next = HiddenField()


class SignOutForm(FlaskForm):  # type: ignore[misc]
    pass
