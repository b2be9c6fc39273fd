"""Forms of the hosted account pages: they parse, and carry the CSRF token (Flask-WTF).

The rules live in the services, which report every problem at once.
"""

from __future__ import annotations

from flask_babel import lazy_gettext
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
)
from wtforms.validators import DataRequired

from idp.accounts.registration import MAX_STUDENT_ROWS, StudentEntry

# Rows the registration page shows without JavaScript (a script may add more, up to MAX_STUDENT_ROWS).
STUDENT_ROWS_SHOWN = 2


class SignInForm(FlaskForm):  # type: ignore[misc]
    username = StringField(_l("Username"), validators=[DataRequired()])
    # Not required: an empty password is a wrong one, counted by the lockout like any other.
    password = PasswordField(_l("Password"))
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
    confirm_password = PasswordField(_l("Re-enter password"))


class ChangeYourPasswordForm(FlaskForm):  # type: ignore[misc]
    current_password = PasswordField(_l("Current password"))
    new_password = PasswordField(_l("New password"))
    confirm_password = PasswordField(_l("Re-enter password"))


class StudentFields:
    """The fields of one student to link, shared by the registration rows and the Students tab."""

    name = StringField(_l("Student name"))
    access_id = StringField(_l("Access ID"))
    access_password = PasswordField(_l("Access Password"))
    relationship = SelectField(_l("Relationship"), choices=[], validate_choice=False)

    def entry(self) -> StudentEntry:
        return StudentEntry(
            name=self.name.data or "",
            access_id=self.access_id.data or "",
            access_password=self.access_password.data or "",
            relationship=self.relationship.data or "",
        )


class StudentRowForm(StudentFields, Form):  # type: ignore[misc]
    pass


def offer_relationships(row: StudentRowForm, relationships: tuple[str, ...]) -> None:
    # The value stays the district's English label; the reader sees it in their language.
    row.relationship.choices = [("", _l("Choose…"))] + [
        (label, lazy_gettext(label)) for label in relationships
    ]


class RegisterForm(FlaskForm):  # type: ignore[misc]
    first_name = StringField(_l("First name"))
    last_name = StringField(_l("Last name"))
    email = StringField(_l("Email"))
    username = StringField(_l("Desired username"))
    password = PasswordField(_l("Password"))
    password_confirm = PasswordField(_l("Re-enter password"))
    students = FieldList(
        FormField(StudentRowForm), min_entries=STUDENT_ROWS_SHOWN, max_entries=MAX_STUDENT_ROWS
    )
    request_id = HiddenField()


class LanguageForm(FlaskForm):  # type: ignore[misc]
    language = StringField(_l("Language"))


class NameForm(FlaskForm):  # type: ignore[misc]
    first_name = StringField(_l("First name"))
    last_name = StringField(_l("Last name"))


class EmailForm(FlaskForm):  # type: ignore[misc]
    email = StringField(_l("New email"))


class UsernameForm(FlaskForm):  # type: ignore[misc]
    username = StringField(_l("New username"))


class PasswordForm(FlaskForm):  # type: ignore[misc]
    current_password = PasswordField(_l("Current password"))
    new_password = PasswordField(_l("New password"))
    confirm_password = PasswordField(_l("Re-enter password"))
    # Checked on the page by default; a browser sends nothing for an unchecked box.
    sign_out_others = BooleanField(_l("Sign out of my other devices"))


class AddStudentForm(StudentFields, FlaskForm):  # type: ignore[misc]
    pass


class PrimaryStudentForm(FlaskForm):  # type: ignore[misc]
    student = StringField()


class ResendForm(FlaskForm):  # type: ignore[misc]
    username = StringField(_l("Username"))
