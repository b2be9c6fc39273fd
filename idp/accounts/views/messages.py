"""The words of domain outcomes on the hosted pages (every string through Flask-Babel)."""

from __future__ import annotations

from flask_babel import gettext as _gettext
from flask_babel import ngettext as _ngettext

from idp.accounts.password_policy import PasswordRules, Violation
from idp.accounts.registration import MAX_STUDENT_ROWS, Problem, Problems, RowProblem
from idp.accounts.usernames import MAX_USERNAME_LENGTH
from idp.students.access import MAX_ACCESS_ID_LENGTH


def _(text: str, **values: object) -> str:
    return str(_gettext(text, **values))


def ngettext(singular: str, plural: str, num: int, **values: object) -> str:
    return str(_ngettext(singular, plural, num, **values))


def password_message(violation: Violation, rules: PasswordRules) -> str:
    messages = {
        Violation.CURRENT_WRONG: _("Current password is not correct."),
        Violation.TOO_SHORT: ngettext(
            "New password must be at least %(num)d character long.",
            "New password must be at least %(num)d characters long.",
            rules.min_length,
        ),
        Violation.TOO_LONG: ngettext(
            "New password must be at most %(num)d character long.",
            "New password must be at most %(num)d characters long.",
            rules.max_length,
        ),
        Violation.UPPER_LOWER: _(
            "New password must contain at least one uppercase and one lowercase letter."
        ),
        Violation.LETTER_NUMBER: _("New password must contain at least one letter and one number."),
        Violation.SPECIAL: _("New password must contain at least one special character."),
        Violation.MISMATCH: _("The verification password you enter must match the new password."),
        Violation.REUSED: _("The password entered was previously used. Please enter a new password."),
        Violation.COMMON: _("New password is too common or too easy to guess. Please choose another."),
        Violation.CONTEXT: _(
            "New password must not be made from your name, username, email address or the district's name."
        ),
    }
    return messages[violation]


def password_requirements(rules: PasswordRules) -> list[str]:
    """Describe the rules that apply, for the form to show before anything is typed."""
    shown = [
        # The noun follows the larger number, so its plural form is the one chosen.
        ngettext(
            "Between %(low)d and %(num)d character; spaces and any letters or symbols are welcome.",
            "Between %(low)d and %(num)d characters; spaces and any letters or symbols are welcome.",
            rules.max_length,
            low=rules.min_length,
        )
    ]
    if rules.require_upper_lower:
        shown.append(_("At least one uppercase and one lowercase letter."))
    if rules.require_letter_number:
        shown.append(_("At least one letter and one number."))
    if rules.require_special:
        shown.append(_("At least one special character."))
    if rules.history_count:
        shown.append(
            ngettext(
                "Not your current password.",
                "Not one of your last %(num)d passwords.",
                rules.history_count,
            )
        )
    if rules.block_common or rules.block_context:
        shown.append(
            _("Not a common password, and not made from your name, username or the district's name.")
        )
    if rules.max_age is not None:
        shown.append(
            ngettext(
                "It must be changed every day.", "It must be changed every %(num)d days.", rules.max_age.days
            )
        )
    return shown


def field_message(field: str, problem: Problem) -> str:
    if problem is Problem.REQUIRED:
        labels = {
            "first_name": _("Enter your first name."),
            "last_name": _("Enter your last name."),
            "email": _("Enter your email address."),
            "username": _("Choose a username."),
        }
        return labels.get(field, _("This field is required."))
    messages = {
        Problem.TOO_LONG: _("This is too long."),
        Problem.INVALID_CHARACTERS: _("This contains characters that are not allowed."),
        Problem.EMAIL_INVALID: _("Enter a valid email address, such as name@example.org."),
        Problem.USERNAME_INVALID: _(
            "A username may contain letters, numbers and . _ - @ ' + only, without spaces."
        ),
        Problem.USERNAME_TAKEN: _("This username is already in use. Please choose another."),
        Problem.NO_STUDENT: _("Add at least one student with their Access ID and Access Password."),
        Problem.TOO_MANY_STUDENTS: ngettext(
            "Add at most %(num)d student at a time.",
            "Add at most %(num)d students at a time.",
            MAX_STUDENT_ROWS,
        ),
    }
    if field == "username" and problem is Problem.TOO_LONG:
        return ngettext(
            "A username may be at most %(num)d character long.",
            "A username may be at most %(num)d characters long.",
            MAX_USERNAME_LENGTH,
        )
    return messages.get(problem, _("This value is not valid."))


def row_message(row: RowProblem) -> str:
    problem = row.problem
    if problem is Problem.ROW_PAUSED:
        return ngettext(
            "Too many attempts for this Access ID. Try again in %(num)d minute.",
            "Too many attempts for this Access ID. Try again in %(num)d minutes.",
            row.minutes,
        )
    if problem is Problem.ROW_RATE_LIMITED:
        return ngettext(
            "Too many attempts from your network. Try again in %(num)d minute.",
            "Too many attempts from your network. Try again in %(num)d minutes.",
            row.minutes,
        )
    messages = {
        Problem.ROW_INCOMPLETE: _("Enter the student's Access ID and Access Password."),
        Problem.ROW_RELATIONSHIP: _("Choose your relationship to the student."),
        Problem.ROW_ACCESS: _("The Access ID or Access Password is not correct."),
        Problem.ROW_ALREADY_LINKED: _("This student is already linked to your account."),
        Problem.TOO_LONG: _("The student's name is too long."),
    }
    return messages.get(
        problem,
        ngettext(
            "The Access ID may be at most %(num)d character.",
            "The Access ID may be at most %(num)d characters.",
            MAX_ACCESS_ID_LENGTH,
        ),
    )


def describe(problems: Problems) -> dict[str, list[str]]:
    """Return the messages by field name ("password" holds the password's, in order)."""
    shown: dict[str, list[str]] = {
        name: [field_message(name, p) for p in found] for name, found in problems.fields.items()
    }
    if problems.password:
        rules = problems.rules or PasswordRules()
        shown["password"] = [password_message(v, rules) for v in problems.password]
    return shown
