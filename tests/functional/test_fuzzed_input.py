"""Every form and OAuth endpoint, fed NUL bytes, bytes that are not UTF-8, control characters and
oversized values by hypothesis, on PostgreSQL (which refuses NUL in text): never a 5xx.

The requests carry what lets them reach the code behind the checks at the door: a valid CSRF
token, a signed-in browser, a live authorization request, a change ticket, a reset link and the
portal's credentials. The examples are derandomised, so CI runs the same ones every time; run
with ``--hypothesis-seed=random`` (and a larger ``FUZZ_EXAMPLES``) to look further.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idp.accounts.models import Account
from idp.accounts.recovery_models import RecoveryPurpose, RecoveryToken
from idp.extensions import db
from idp.tokens import new_secret, secret_hash
from idp.web.context import services
from tests.conftest import PASSWORD, AuthRequest, csrf_token, redirect_params
from tests.functional import oidc
from tests.functional.tokens import OFFLINE_SCOPE, basic_auth

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))

# Bytes that have broken parsers and databases: NUL, invalid and overlong UTF-8, an encoded
# surrogate, code points past U+10FFFF, controls, separators, and what looks like markup or SQL.
NASTY = [
    b"\x00",
    b"\xff",
    b"\xc3\x28",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\x01\x7f\x1b",
    b"\r\n",
    b"\t",
    b"&=;%",
    b"\xef\xbf\xbd",
    b"\xe2\x80\xae",
    b"<script>",
    b"' OR 1=1--",
    "ü".encode(),
    "👪".encode(),
]
piece = st.one_of(
    st.sampled_from(NASTY),
    st.binary(max_size=6),
    st.text(max_size=6).map(lambda text: text.encode("utf-8", "surrogatepass")),
)
value = st.one_of(
    st.lists(piece, max_size=6).map(b"".join),
    st.sampled_from(NASTY).map(lambda nasty: nasty * 3000),  # oversized, NUL all the way
)


@dataclass
class Endpoint:
    method: str
    path: str
    fields: tuple[str, ...]
    # Values sent as they are beside the fuzzed ones (the CSRF token, a live request id …).
    fixed: Callable[[Fixture], dict[str, str]] = field(default=lambda fixture: {})
    headers: Callable[[Fixture], dict[str, str]] = field(default=lambda fixture: {})
    # The browser: a visitor's, or the signed-in parent's.
    signed_in: bool = False


@dataclass
class Fixture:
    visitor: FlaskClient
    parent: FlaskClient
    portal: Any
    request_id: str
    reset_path: str
    csrf: dict[bool, str]


def csrf(fixture: Fixture, signed_in: bool = False) -> dict[str, str]:
    return {"csrf_token": fixture.csrf[signed_in]}


AUTHORIZE = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    "ui_locales",
    "request",
    "claims",
)
TOKEN = (
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "client_id",
    "client_secret",
    "refresh_token",
    "scope",
)
PORTAL_AUTH = lambda fixture: basic_auth(fixture.portal.client_id, fixture.portal.client_secret)  # noqa: E731
STUDENT_ROW = (
    "students-0-name",
    "students-0-access_id",
    "students-0-access_password",
    "students-0-relationship",
)

ENDPOINTS = [
    Endpoint("POST", "/signin", ("username", "password", "request_id"), lambda f: csrf(f)),
    Endpoint("GET", "/signin", ("request", "lang")),
    Endpoint(
        "POST",
        "/register",
        ("first_name", "last_name", "email", "username", "password", "password_confirm", *STUDENT_ROW),
        lambda f: csrf(f),
    ),
    Endpoint("POST", "/signin/trouble/password", ("username", "email", "request_id"), lambda f: csrf(f)),
    Endpoint("POST", "/signin/trouble/username", ("email", "request_id"), lambda f: csrf(f)),
    Endpoint("GET", "/signin/trouble", ("tab", "request")),
    Endpoint("POST", "{reset}", ("username", "new_password", "confirm_password"), lambda f: csrf(f)),
    Endpoint(
        "POST",
        "/signin/change-password",
        ("current_password", "new_password", "confirm_password"),
        lambda f: csrf(f),
    ),
    Endpoint("POST", "/verify/resend", ("username",), lambda f: csrf(f)),
    Endpoint("GET", "/authorize", AUTHORIZE),
    Endpoint("GET", "/authorize", AUTHORIZE, signed_in=True),
    Endpoint(
        "POST", "/authorize/consent", ("request_id", "allow", "deny"), lambda f: csrf(f, True), signed_in=True
    ),
    Endpoint(
        "POST",
        "/authorize/consent",
        ("allow", "deny"),
        lambda f: {**csrf(f, True), "request_id": f.request_id},
        signed_in=True,
    ),
    Endpoint("POST", "/token", TOKEN),
    Endpoint("POST", "/token", TOKEN, headers=PORTAL_AUTH),
    Endpoint("POST", "/revoke", ("token", "token_type_hint", "client_id"), headers=PORTAL_AUTH),
    Endpoint("POST", "/introspect", ("token", "token_type_hint", "client_id"), headers=PORTAL_AUTH),
    Endpoint("POST", "/userinfo", ("access_token",)),
    Endpoint(
        "GET",
        "/logout",
        ("id_token_hint", "post_logout_redirect_uri", "state", "client_id", "logout_hint", "ui_locales"),
    ),
    Endpoint(
        "POST",
        "/logout",
        ("id_token_hint", "post_logout_redirect_uri", "state", "client_id", "confirm"),
        lambda f: csrf(f, True),
        signed_in=True,
    ),
    Endpoint("GET", "/account", ("edit", "tab"), signed_in=True),
    Endpoint("POST", "/account/name", ("first_name", "last_name"), lambda f: csrf(f, True), signed_in=True),
    Endpoint("POST", "/account/email", ("email",), lambda f: csrf(f, True), signed_in=True),
    Endpoint("POST", "/account/username", ("username",), lambda f: csrf(f, True), signed_in=True),
    Endpoint(
        "POST",
        "/account/password",
        ("current_password", "new_password", "confirm_password", "sign_out_others"),
        lambda f: csrf(f, True),
        signed_in=True,
    ),
    Endpoint(
        "POST",
        "/account/students",
        ("name", "access_id", "access_password", "relationship"),
        lambda f: csrf(f, True),
        signed_in=True,
    ),
    Endpoint("POST", "/account/students/primary", ("student",), lambda f: csrf(f, True), signed_in=True),
]


@pytest.fixture
def fixture(app: Flask, database_url: str, make_account, make_client, make_student, clock) -> Fixture:
    if not database_url.startswith("postgresql"):
        pytest.skip("NUL is refused by PostgreSQL; SQLite would store it")
    account: Account = make_account(username="dana.rivera", email="dana@example.org")
    make_account(username="sam.rivera", email="sam@example.org", temporary=True)
    student = make_student(access_id="ZR-1", access_password="orchid-42")
    services().guardianship().link(account, student, "Mother")
    reset_token = new_secret("rc")
    db.session.add(
        RecoveryToken(
            token_hash=secret_hash(reset_token),
            account_id=account.id,
            purpose=RecoveryPurpose.PASSWORD,
            created_at=clock.now(),
            expires_at=clock.now() + timedelta(minutes=30),
        )
    )
    db.session.commit()
    portal = make_client(scope=OFFLINE_SCOPE)
    parent, visitor = app.test_client(), app.test_client()
    with app.app_context():
        started = parent.get(AuthRequest(portal.client_id, scope=OFFLINE_SCOPE).url())
        request_id = redirect_params(started.headers["Location"])["request"]
        assert oidc.sign_in(parent, "dana.rivera", PASSWORD, request_id).status_code == 303
        parent_token = csrf_token(parent.get("/account").get_data(as_text=True))
    with app.app_context():
        # The visitor holds a change ticket: a temporary password's sign-in.
        assert oidc.sign_in(visitor, "sam.rivera", PASSWORD).status_code == 303
        visitor_token = csrf_token(visitor.get("/signin/change-password").get_data(as_text=True))
    return Fixture(
        visitor,
        parent,
        portal,
        request_id,
        f"/reset/{reset_token}",
        {False: visitor_token, True: parent_token},
    )


def encode(pairs: list[tuple[str, bytes]], fixed: dict[str, str]) -> bytes:
    parts = [f"{quote_from_bytes(name.encode())}={quote_from_bytes(raw)}" for name, raw in pairs]
    parts += [f"{name}={quote_from_bytes(text.encode())}" for name, text in fixed.items()]
    return "&".join(parts).encode()


@pytest.mark.parametrize(
    "endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}{' signed in' if e.signed_in else ''}"
)
def test_no_input_gives_a_server_error(app: Flask, fixture: Fixture, endpoint: Endpoint):
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        st.lists(
            st.tuples(st.sampled_from(endpoint.fields), value), min_size=1, max_size=len(endpoint.fields) + 2
        )
    )
    def run(pairs: list[tuple[str, bytes]]) -> None:
        client = fixture.parent if endpoint.signed_in else fixture.visitor
        path = endpoint.path.replace("{reset}", fixture.reset_path)
        body = encode(pairs, endpoint.fixed(fixture))
        with app.app_context():
            if endpoint.method == "GET":
                response = client.get(
                    path, query_string=body.decode("ascii"), headers=endpoint.headers(fixture)
                )
            else:
                response = client.post(
                    path,
                    data=body,
                    content_type="application/x-www-form-urlencoded",
                    headers=endpoint.headers(fixture),
                )
        db.session.rollback()
        assert response.status_code < 500, (endpoint.method, path, body[:300], response.status_code)

    run()
