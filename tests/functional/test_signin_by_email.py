"""Sign in with the username or the email address: the password decides among the accounts an
address names, the lockout counts the typed identifier and every account it names, and unknown
identifiers get the same answer in the same time."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.accounts.models import Account, OPSession
from idp.audit import AuditEvent
from idp.config import Settings
from idp.extensions import db
from idp.tokens import secret_hash
from tests.conftest import PASSWORD, csrf_token, settings_for_tests
from tests.functional import oidc
from tests.timing import steady_gaps

THRESHOLD = 3
INVALID = "Invalid username or password."
LOCKED = "This account is locked because of too many failed sign-in attempts."


@pytest.fixture
def settings(database_url: str, keys_dir: Path) -> Settings:
    return settings_for_tests(database_url, keys_dir, lockout_threshold=THRESHOLD, lockout_seconds=300)


def sign_in(app: Flask, identifier: str, password: str = PASSWORD, client: FlaskClient | None = None):
    with app.app_context():  # a fresh ``g``: each browser its own CSRF token
        return oidc.sign_in(client or app.test_client(), identifier, password)


def signed_in_account(response) -> str:
    """The account of the session the sign-in started (found by its cookie, as the provider does)."""
    assert response.status_code == 303, re.findall(r'role="alert">[^<]*', response.get_data(as_text=True))
    cookie = next(
        value for value in response.headers.getlist("Set-Cookie") if value.startswith("idp_session=")
    )
    token_hash = secret_hash(cookie.split("=", 1)[1].split(";", 1)[0])
    account_id = db.session.execute(
        select(OPSession.account_id).where(OPSession.token_hash == token_hash)
    ).scalar_one()
    db.session.commit()  # end the read: SQLite's BEGIN IMMEDIATE would hold off the next request
    return str(account_id)


def page(response) -> str:
    text = response.get_data(as_text=True)
    return re.sub(r'name="csrf_token" type="hidden" value="[^"]*"', "", text)


def test_the_address_signs_in_whatever_its_case(app: Flask, make_account: Callable[..., Account]):
    dana = make_account(username="dana.rivera", email="Dana.Rivera@Example.org")

    assert signed_in_account(sign_in(app, "  dana.rivera@example.ORG ")) == dana.id
    assert signed_in_account(sign_in(app, "DANA.RIVERA")) == dana.id


def test_the_password_decides_among_the_accounts_of_one_address(app, make_account):
    mother = make_account(email="family@example.org", password="mother's own long passphrase")
    father = make_account(email="family@example.org", password="father's own long passphrase")
    make_account(email="elsewhere@example.org", password="a stranger's long passphrase")

    assert signed_in_account(sign_in(app, "family@example.org", "mother's own long passphrase")) == mother.id
    assert signed_in_account(sign_in(app, "family@example.org", "father's own long passphrase")) == father.id
    assert INVALID in page(sign_in(app, "family@example.org", "a stranger's long passphrase"))


def test_a_username_that_looks_like_an_address_comes_first(app, make_account):
    owner = make_account(
        username="pat@example.org", email="pat.owner@example.org", password="owner passphrase long"
    )
    make_account(email="pat@example.org", password="owner passphrase long")

    assert signed_in_account(sign_in(app, "pat@example.org", "owner passphrase long")) == owner.id


def test_at_most_five_accounts_of_one_address_are_tried(app, make_account, clock):
    accounts = []
    for n in range(6):
        accounts.append(make_account(email="shared@example.org", password=f"passphrase number {n} is long"))
        clock.advance(timedelta(minutes=1))  # the oldest five are the ones tried

    assert (
        signed_in_account(sign_in(app, "shared@example.org", "passphrase number 4 is long")) == accounts[4].id
    )
    assert INVALID in page(sign_in(app, "shared@example.org", "passphrase number 5 is long"))
    assert (
        signed_in_account(sign_in(app, accounts[5].username, "passphrase number 5 is long")) == accounts[5].id
    )


def test_failures_by_address_count_against_the_username_too(app, make_account):
    dana = make_account(username="dana.rivera", email="dana@example.org")
    for _ in range(THRESHOLD):
        assert INVALID in page(sign_in(app, "dana@example.org", "not the password"))

    assert LOCKED in page(sign_in(app, "dana.rivera"))
    assert LOCKED in page(sign_in(app, "dana@example.org"))
    failed = db.session.execute(select(AuditEvent.account_id).where(AuditEvent.name == "signin.failed")).all()
    db.session.commit()
    assert {account_id for (account_id,) in failed} == {dana.id}


def test_switching_between_username_and_address_gains_no_guesses(app, make_account):
    make_account(username="dana.rivera", email="dana@example.org")
    answers = [
        page(sign_in(app, identifier, "not the password"))
        for identifier in ("dana.rivera", "dana@example.org", "DANA.rivera", "Dana@Example.org")
    ]

    assert [INVALID in answer for answer in answers] == [True] * THRESHOLD + [False]
    assert LOCKED in answers[-1]


def test_one_locked_account_of_an_address_keeps_the_others_signing_in(app, make_account):
    make_account(username="mother", email="family@example.org", password="mother's own long passphrase")
    father = make_account(
        username="father", email="family@example.org", password="father's own long passphrase"
    )
    for _ in range(THRESHOLD):
        sign_in(app, "mother", "not the password")

    assert signed_in_account(sign_in(app, "family@example.org", "father's own long passphrase")) == father.id
    assert LOCKED in page(sign_in(app, "family@example.org", "mother's own long passphrase"))


def test_unknown_and_known_addresses_get_the_same_page(app, make_account):
    make_account(email="dana@example.org")
    client = app.test_client()

    known = page(sign_in(app, "dana@example.org", "not the password", client))
    unknown = page(sign_in(app, "nobody@example.org", "not the password", client))

    assert known == unknown.replace("nobody@example.org", "dana@example.org")


@pytest.mark.parametrize(
    "identifier",
    ["@", "a@", "@b", "x" * 5000 + "@example.org", "nul\x00@example.org", "%@%", "_@_", "\ufffd@example.org"],
)
def test_odd_identifiers_are_a_wrong_sign_in(app, make_account, identifier):
    make_account(email="dana@example.org")

    response = sign_in(app, identifier, "not the password")

    assert response.status_code == 200 and INVALID in response.get_data(as_text=True)


@pytest.mark.commits
def test_unknown_and_known_addresses_take_the_same_time(
    app: Flask, database_url: str, keys_dir: Path, _apps, clock
):
    """Within 10%, with the provider's own argon2 cost (the tests' cheap one would leave only the
    database to measure)."""
    real = _apps.get(
        settings_for_tests(
            database_url,
            keys_dir,
            argon2_time_cost=2,
            argon2_memory_kib=19_456,
            lockout_threshold=100_000,
            rate_limit_signin="100000/minute",
        ),
        clock,
    )
    with real.app_context():
        from idp.web.context import services

        services().accounts().create(
            username="dana.rivera", email="dana@example.org", password=PASSWORD, first_name="D", last_name="R"
        )
        db.session.commit()
        client = real.test_client()
        token = csrf_token(client.get("/signin").get_data(as_text=True))

        def post(identifier: str) -> Callable[[], None]:
            form = {
                "csrf_token": token,
                "username": identifier,
                "password": "not the password",
                "request_id": "",
            }

            def send() -> None:
                assert client.post("/signin", data=form).status_code == 200

            return send

        for _ in range(3):
            post("dana@example.org")()
            post("nobody@example.org")()
        gaps = steady_gaps(post("dana@example.org"), post("nobody@example.org"), limit=0.10, pairs=40)
        db.session.rollback()
    assert abs(gaps[-1]) < 0.10, f"a known address takes {gaps} longer, as a fraction"
