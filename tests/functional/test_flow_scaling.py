"""A flow's database work does not grow with the number of codes stored: every statement of it
finds its rows through an index; and a sign-in and a code exchange keep to their statements.

Authlib asks three times per flow whether the client already has a code with the request's nonce
(a replayed authentication request); codes are kept, used, until the retention time ends, so a
check that scanned the client's codes would slow every flow as the table grows. On SQLite the
test counts the virtual machine's instructions (the work of every statement, whatever the
machine is doing); on PostgreSQL it runs each statement of the flow again under EXPLAIN ANALYZE
and counts the rows it read only to throw away.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, insert

from idp.accounts.models import Account
from idp.clock import FrozenClock
from idp.db import new_id
from idp.extensions import db
from idp.oauth.models import AuthorizationCode
from idp.tokens import secret_hash
from tests.conftest import AuthRequest, RegisteredTestClient
from tests.functional.oidc import authorize_as, redeem

FEW, MANY = 20, 4000


@pytest.fixture
def dana(make_account: Callable[..., Account]) -> Account:
    return make_account(username="dana.rivera")


@pytest.fixture
def portal(make_client: Callable[..., RegisteredTestClient]) -> RegisteredTestClient:
    return make_client()


def one_flow(client: FlaskClient, portal: RegisteredTestClient) -> None:
    """Authorize (the browser is signed in), redeem the code, as a portal does on every visit."""
    auth = AuthRequest(portal.client_id)
    code = authorize_as(client, auth, "dana.rivera")["code"]
    assert redeem(client, auth, code, portal.client_secret).status_code == 200


def store_codes(count: int, portal: RegisteredTestClient, dana: Account, clock: FrozenClock) -> None:
    """Codes of the same client, used and unused, each with its nonce, as days of traffic leave them."""
    now = clock.now()
    rows = [
        {
            "id": new_id(),
            "code_hash": secret_hash(secrets.token_urlsafe(16)),
            "client_id": portal.client_id,
            "account_id": dana.id,
            "redirect_uri": portal.redirect_uri,
            "scope": "openid",
            "nonce": secrets.token_urlsafe(12),
            "auth_time": now,
            "created_at": now,
            "expires_at": now + timedelta(minutes=1),
            "used_at": now if n % 2 else None,
        }
        for n in range(count)
    ]
    db.session.execute(insert(AuthorizationCode), rows)
    db.session.commit()


@contextmanager
def sqlite_vm_steps() -> Iterator[list[int]]:
    """Count the SQLite virtual machine instructions run on the session's connection."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    driver = db.session.connection().connection.driver_connection
    driver.set_progress_handler(count, 1)
    try:
        yield steps
    finally:
        driver.set_progress_handler(None, 1)


def test_a_flows_sqlite_work_is_the_same_with_few_and_many_codes_stored(
    client: FlaskClient, portal: RegisteredTestClient, dana: Account, clock: FrozenClock, database_url: str
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("counts SQLite's own instructions; PostgreSQL is checked by EXPLAIN ANALYZE below")
    one_flow(client, portal)  # signs the browser in; the flows measured run on its session
    store_codes(FEW, portal, dana, clock)
    with sqlite_vm_steps() as few:
        one_flow(client, portal)
    store_codes(MANY - FEW, portal, dana, clock)
    with sqlite_vm_steps() as many:
        one_flow(client, portal)
    # An index finds a row in the same number of instructions however many there are; a scan
    # of the client's codes would add several instructions for every one of the thousands stored.
    assert many[0] <= few[0] * 1.05, (few[0], many[0])


def rows_looked_at_and_dropped(plan: dict[str, Any]) -> int:
    """Rows a plan node (and those below it) read only to throw away: what a scan costs beyond its answer."""
    dropped = int(plan.get("Rows Removed by Filter", 0)) + int(plan.get("Rows Removed by Index Recheck", 0))
    return dropped + sum(rows_looked_at_and_dropped(child) for child in plan.get("Plans", ()))


def test_no_statement_of_a_flow_reads_rows_it_throws_away_on_postgresql(
    client: FlaskClient, portal: RegisteredTestClient, dana: Account, clock: FrozenClock, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("asks PostgreSQL's executor")
    one_flow(client, portal)
    store_codes(MANY, portal, dana, clock)
    connection = db.session.connection()
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            statements.append((statement, parameters))

    event.listen(connection, "before_cursor_execute", record)
    try:
        one_flow(client, portal)
    finally:
        event.remove(connection, "before_cursor_execute", record)
    assert any("authorization_code" in statement for statement, _ in statements)
    wasteful = []
    for statement, parameters in statements:
        # Run again under EXPLAIN ANALYZE, inside a savepoint that undoes what it changes.
        with connection.begin_nested() as savepoint:
            (document,) = connection.exec_driver_sql(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters
            ).one()
            savepoint.rollback()
        dropped = rows_looked_at_and_dropped(document[0]["Plan"])
        if dropped > FEW:
            wasteful.append(f"{dropped} rows read and dropped by: {statement}")
    assert wasteful == []


@contextmanager
def statements_sent() -> Iterator[list[str]]:
    """The SQL statements the session's connection sends meanwhile (BEGIN and COMMIT aside)."""
    sent: list[str] = []
    connection = db.session.connection()

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        verb = statement.split(None, 1)[0].upper()
        # The test's SAVEPOINTs stand where the app's BEGIN and COMMIT would be.
        if verb not in ("SAVEPOINT", "RELEASE", "ROLLBACK"):
            sent.append(verb)

    event.listen(connection, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(connection, "before_cursor_execute", record)


def test_a_code_exchange_sends_six_statements(
    client: FlaskClient, portal: RegisteredTestClient, dana: Account
) -> None:
    # The round-trip budget of docs/performance.md: the client, the code with its account, its
    # consumption, the family and the audit event (a refresh token is one more with offline access),
    # the students of the ID token.
    one_flow(client, portal)
    auth = AuthRequest(portal.client_id)
    code = authorize_as(client, auth, "dana.rivera")["code"]
    with statements_sent() as sent:
        assert redeem(client, auth, code, portal.client_secret).status_code == 200
    assert sent == ["SELECT", "SELECT", "UPDATE", "INSERT", "INSERT", "SELECT"], sent


def test_a_sign_in_sends_seven_statements(client: FlaskClient, dana: Account) -> None:
    from tests.functional.oidc import sign_in

    page = client.get("/signin")
    assert page.status_code == 200
    with statements_sent() as sent:
        assert sign_in(client, "dana.rivera").status_code == 303
    # The account; the lock Redis may have lost (idp.counters.durable: in the app, on a connection
    # of its own); the district's lockout threshold and duration (staff set them in the console);
    # whether any policy can expire a password; the sign-in recorded (account, audit event); the
    # new session.
    assert sent == ["SELECT", "SELECT", "SELECT", "SELECT", "UPDATE", "INSERT", "INSERT"], sent


def test_an_authorization_of_a_signed_in_browser_sends_six_statements(
    client: FlaskClient, portal: RegisteredTestClient, dana: Account
) -> None:
    one_flow(client, portal)  # signs the browser in
    auth = AuthRequest(portal.client_id)
    with statements_sent() as sent:
        response = client.get(auth.url())
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    # The session; the client and the nonce's replay check, once each (Authlib would validate the
    # request a second time on issuing); no consent for a first-party portal; the audit event, the
    # code, the session's portal.
    assert sent == ["SELECT", "SELECT", "SELECT", "INSERT", "INSERT", "INSERT"], sent
