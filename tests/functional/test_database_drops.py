"""Requests in flight when PostgreSQL drops their connection: a read is run once more, anything
else answers 503 with Retry-After, never 500; and no connection is held across argon2.

The drop is real: just before a chosen statement runs, the test ends that connection's backend
with ``pg_terminate_backend``, as a restart or a failover of the server would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select
from sqlalchemy.exc import InternalError

from idp.accounts.hashing import BoundedPasswordHasher
from idp.accounts.models import Account
from idp.audit import AuditEvent
from idp.extensions import db
from tests.admin_fixtures import AdminClient, bearer
from tests.conftest import PASSWORD, AuthRequest, RegisteredTestClient, csrf_token, redirect_params
from tests.database_drops import terminate

# The requests' connections come from the pool and really commit: no test transaction around them.
pytestmark = pytest.mark.commits


class Drops:
    """Ends the backend of the connection about to run each of the next ``count`` statements."""

    def __init__(self) -> None:
        self.count = 0
        self.dropped: list[str] = []

    def before_cursor_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.count:
            self.count -= 1
            self.dropped.append(statement.split()[0])
            terminate(conn.connection.dbapi_connection.info.backend_pid)


@pytest.fixture
def drops(app: Flask, database_url: str) -> Iterator[Drops]:
    if not database_url.startswith("postgresql"):
        pytest.skip("a SQLite file has no server to drop the connection")
    found = Drops()
    event.listen(db.engine, "before_cursor_execute", found.before_cursor_execute)
    try:
        yield found
    finally:
        event.remove(db.engine, "before_cursor_execute", found.before_cursor_execute)


@pytest.fixture
def portal(make_client: Callable[..., RegisteredTestClient]) -> RegisteredTestClient:
    return make_client()


def test_a_read_whose_connection_drops_is_run_once_more(
    client: FlaskClient, drops: Drops, portal: RegisteredTestClient
) -> None:
    drops.count = 1
    response = client.get(AuthRequest(portal.client_id).url())

    assert drops.dropped == ["SELECT"]
    assert response.status_code == 303
    assert "request" in redirect_params(response.headers["Location"])


def test_a_connection_that_cannot_roll_back_after_the_response_is_thrown_away_not_answered_500(
    client: FlaskClient, portal: RegisteredTestClient
) -> None:
    # Through PgBouncer, a connection ended mid-request can fail even the session's closing
    # ROLLBACK ("received 2 results from command 'ROLLBACK'"), after the response is made.
    failed: list[object] = []

    def fail_once(connection: Any) -> None:
        if not failed:
            failed.append(connection)
            raise InternalError("ROLLBACK", None, Exception("received 2 results from command 'ROLLBACK'"))

    def get(url: str) -> Any:
        # In a thread of its own, outside the test's app context, a request pushes its own and
        # tears it down, as under gunicorn.
        with ThreadPoolExecutor(1) as thread:
            return thread.submit(client.get, url).result()

    db.session.commit()  # the portal, and SQLite's one write lock, free for the requests' threads
    signin_page = get(AuthRequest(portal.client_id).url()).headers["Location"]
    event.listen(db.engine, "rollback", fail_once)
    try:
        response = get(signin_page)
    finally:
        event.remove(db.engine, "rollback", fail_once)

    assert failed, "the request's session rolled back nothing: the test would prove nothing"
    assert response.status_code == 200
    assert get(signin_page).status_code == 200


def test_a_read_whose_connection_drops_twice_answers_503_with_retry_after(
    client: FlaskClient, drops: Drops, portal: RegisteredTestClient
) -> None:
    drops.count = 2
    response = client.get(AuthRequest(portal.client_id).url())

    assert len(drops.dropped) == 2
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "Try again in a moment" in response.get_data(as_text=True)
    # The connections that dropped were replaced: the next request is served.
    assert client.get(AuthRequest(portal.client_id).url()).status_code == 303


def test_a_sign_in_whose_connection_drops_answers_503_and_writes_nothing(
    client: FlaskClient, drops: Drops, make_account: Callable[..., Account]
) -> None:
    account = make_account(username="dana.rivera")
    token = csrf_token(client.get("/signin").get_data(as_text=True))
    form = {"csrf_token": token, "username": "dana.rivera", "password": PASSWORD}

    drops.count = 1
    response = client.post("/signin", data=form)

    assert drops.dropped != []
    assert response.status_code == 503  # a POST is never run twice by the provider
    assert response.headers["Retry-After"] == "5"
    login_count = db.session.execute(select(Account.login_count).where(Account.id == account.id)).scalar()
    signed_in = db.session.execute(select(AuditEvent.id).where(AuditEvent.name == "signin.succeeded")).all()
    db.session.commit()
    assert (login_count, signed_in) == (0, [])
    # The browser sends the form again once the database is back, and it works.
    assert client.post("/signin", data=form).status_code == 303


def test_a_token_request_whose_connection_drops_answers_a_json_503(
    client: FlaskClient, drops: Drops, portal: RegisteredTestClient
) -> None:
    drops.count = 1
    response = client.post(
        "/token",
        data={"grant_type": "authorization_code", "code": "ac_unknown", "redirect_uri": portal.redirect_uri},
        auth=(portal.client_id, portal.client_secret or ""),
    )

    assert drops.dropped != []
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["error"] == "temporarily_unavailable"


def test_no_connection_is_held_while_a_password_is_rehashed_at_sign_in(
    client: FlaskClient, make_account: Callable[..., Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hash made with other argon2 parameters is upgraded at sign-in: a second argon2 run, which
    # like the check before it must not keep a pooled connection (or a transaction) waiting.
    account = make_account(username="dana.rivera")
    older = PasswordHasher(time_cost=2, memory_cost=512, parallelism=1).hash(PASSWORD)
    account.password_hash = older
    db.session.commit()
    held: list[int] = []
    rehash = BoundedPasswordHasher.hash

    def observing_hash(self: BoundedPasswordHasher, password: str) -> str:
        held.append(db.engine.pool.checkedout())
        return rehash(self, password)

    monkeypatch.setattr(BoundedPasswordHasher, "hash", observing_hash)
    token = csrf_token(client.get("/signin").get_data(as_text=True))
    response = client.post(
        "/signin", data={"csrf_token": token, "username": "dana.rivera", "password": PASSWORD}
    )

    assert response.status_code == 303
    assert held == [0]
    stored = db.session.execute(select(Account.password_hash).where(Account.id == account.id)).scalar_one()
    db.session.commit()
    assert stored != older


def test_an_admin_api_request_whose_connection_drops_answers_a_503_problem(
    client: FlaskClient, drops: Drops, make_admin_client: Callable[..., AdminClient]
) -> None:
    headers = bearer(client, make_admin_client("admin:read"), "admin:read")
    # The bearer token is checked before the view (the view alone is run again after a drop).
    drops.count = 1
    response = client.get("/admin/api/v1/accounts", headers=headers)

    assert drops.dropped == ["SELECT"]
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"].endswith("/admin/api/problems/unavailable")
    assert client.get("/admin/api/v1/accounts", headers=headers).status_code == 200
