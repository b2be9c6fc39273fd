"""``read_signin_post`` accepts exactly what ``SignInForm`` would, and reads the same values."""

from __future__ import annotations

import pytest
from flask import Flask
from werkzeug.datastructures import MultiDict

from idp.accounts.forms import SignInForm, read_signin_post

CASES = [
    {"username": "parent", "password": "secret"},
    {"username": "parent", "password": "secret", "request_id": "abc"},
    {"username": "", "password": "secret"},
    {"username": "parent", "password": ""},
    {"username": "   ", "password": "secret"},
    {"username": "parent", "password": " \t "},
    {"username": " parent ", "password": " secret "},
    {"password": "secret"},
    {"username": "parent"},
    {},
    {"username": ["first", "second"], "password": ["one", "two"]},
    {"username": ["", "second"], "password": "secret"},
]


@pytest.fixture
def form_app() -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test", WTF_CSRF_ENABLED=False)
    return app


@pytest.mark.parametrize("fields", CASES)
def test_read_signin_post_agrees_with_the_form(form_app: Flask, fields: dict[str, object]) -> None:
    formdata = MultiDict(
        [
            (name, item)
            for name, value in fields.items()
            for item in (value if isinstance(value, list) else [value])
        ]
    )
    with form_app.test_request_context(method="POST", data=formdata):
        form = SignInForm()
        accepted = form.validate()
        posted = read_signin_post(formdata)
    assert (posted is not None) == accepted
    if posted is not None:
        assert (posted.username, posted.password, posted.request_id) == (
            form.username.data,
            form.password.data,
            form.request_id.data or "",  # the form has None for a field not sent
        )
