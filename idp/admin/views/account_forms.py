"""Forms of the console's account pages: they parse, and carry the CSRF token (Flask-WTF).

The rules (reach, permissions, what a status means) live in the services; these only read fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString
from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField
from wtforms.validators import DataRequired, Length

from idp.accounts.administration import MAX_REASON_LENGTH
from idp.admin.search import MAX_QUERY_LENGTH

# The search's menus as (value, label), in the seed's words; "" is no filter.
ACCOUNT_TYPES = (("", _l("All")), ("parent", _l("Parent")), ("student", _l("Student")))
ACCOUNT_STATUSES = (
    ("", _l("All")),
    ("active", _l("Active")),
    ("pending", _l("Pending")),
    ("locked", _l("Locked")),
    ("expired", _l("Expired")),
    ("disabled", _l("Disabled")),
    ("test", _l("Test")),
)


@dataclass(frozen=True)
class SearchForm:
    """The search row of Manage Parent/Student Accounts, as asked: a GET form, so no CSRF token."""

    q: str = ""
    type: str = ""
    status: str = ""
    types: tuple[tuple[str, LazyString], ...] = ACCOUNT_TYPES
    statuses: tuple[tuple[str, LazyString], ...] = ACCOUNT_STATUSES
    max_length: int = MAX_QUERY_LENGTH


class ReasonForm(FlaskForm):  # type: ignore[misc]
    """Disable, or emulate: a reason is required."""

    reason = StringField(_l("Reason"), validators=[DataRequired(), Length(max=MAX_REASON_LENGTH)])


class TypeForm(FlaskForm):  # type: ignore[misc]
    # "parent" or "student": the service refuses anything else.
    type = StringField(_l("Account Type"))


class TestMarkForm(FlaskForm):  # type: ignore[misc]
    # "1" marks the account as a test account, "0" clears the mark.
    test = HiddenField(default="1")
