"""The consent page's form (Flask-WTF adds the CSRF token)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, SubmitField


class ConsentForm(FlaskForm):  # type: ignore[misc]
    request_id = HiddenField()
    allow = SubmitField(_l("Allow"))
    deny = SubmitField(_l("Deny"))
