"""The provider through PgBouncer in transaction mode (tests/infra.py), in front of a PostgreSQL
database of the module's own, migrated directly.

In transaction mode a client's transactions may run on different server connections: a
statement psycopg prepared on one does not exist on the next (the engine never prepares,
idp.db.engine_options), and no session state may be relied on. A server connection that
PostgreSQL ends (a restart, a failover) costs at most that request a 503, never a 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import Connection, event, text

from idp.accounts.models import Account
from idp.clock import FrozenClock
from idp.config import Settings
from idp.extensions import db
from tests.conftest import (
    PASSWORD,
    POSTGRES_ADMIN_URL,
    POSTGRES_TEST_DB,
    AppCache,
    AuthRequest,
    RegisteredTestClient,
    csrf_token,
    drop_postgres_database,
    postgres_url,
    recreate_postgres_database,
    settings_for_tests,
)
from tests.functional import oidc
from tests.infra import pgbouncer, pgbouncer_admin

# The requests' connections come from the pool and really commit: no test transaction around them.
pytestmark = pytest.mark.commits

DATABASE = f"{POSTGRES_TEST_DB}_pgbouncer"
ROSTER = Path(__file__).resolve().parents[1] / "fixtures" / "oneroster" / "bulk"
# Two server connections: a client's transactions take turns on them.
POOL_SIZE = 2


@pytest.fixture(scope="module")
def pooled_url(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path, _apps: AppCache, _clock: FrozenClock
) -> Iterator[str]:
    """A migrated database (migrated directly, not through the pooler), and PgBouncer in front."""
    recreate_postgres_database(DATABASE)
    direct = postgres_url(DATABASE)
    try:
        with _apps.get(settings_for_tests(direct, keys_dir), _clock).app_context():
            upgrade()
        _apps.drop(direct)
        with pgbouncer(direct, tmp_path_factory.mktemp("pgbouncer"), pool_size=POOL_SIZE) as url:
            yield url
            _apps.drop(url)
    finally:
        drop_postgres_database(DATABASE)


@pytest.fixture
def settings(pooled_url: str, keys_dir: Path) -> Settings:
    return settings_for_tests(pooled_url, keys_dir)


def terminate_server_connections() -> int:
    """End every PostgreSQL backend of the database (PgBouncer's server connections), as a restart
    or a failover would; return how many there were, once they are gone."""
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        query = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        pids = [pid for (pid,) in admin.execute(query, (DATABASE,))]
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone():
            pass  # pg_terminate_backend only signals; the loop is bounded by the test's timeout
    return len(pids)


def test_the_same_statement_runs_on_every_server_connection_without_preparing(app: Flask) -> None:
    # psycopg would prepare this statement at its fifth run on one client connection; its later
    # runs reach the other server connection every other time, where no such statement exists.
    statement = text("SELECT pg_backend_pid(), count(*) FROM account WHERE username = :username")
    seen: list[int] = []
    with db.engine.connect() as runner, db.engine.connect() as holder:
        for run in range(20):
            if run % 2 == 0:
                # Another client holds a server connection: the runner gets the other one.
                holder.execute(text("SELECT 1"))
            pid, count = runner.execute(statement, {"username": f"nobody{run % 3}"}).one()
            runner.commit()
            holder.commit()
            seen.append(pid)
            assert count == 0
    assert len(set(seen)) == POOL_SIZE  # the runner's transactions used both server connections


def test_the_pooler_runs_in_transaction_mode_with_its_pool_in_use(app: Flask, pooled_url: str) -> None:
    pools = pgbouncer_admin(pooled_url, "SHOW POOLS")
    assert any(row[0] == DATABASE and row[-1] == "transaction" for row in pools), pools
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT current_database()")).scalar_one() == DATABASE


def test_sign_in_and_a_token_exchange_work_through_the_pooler(
    client: FlaskClient,
    make_account: Callable[..., Account],
    make_client: Callable[..., RegisteredTestClient],
) -> None:
    make_account(username="dana.rivera")
    portal = make_client(scope="openid profile email students offline_access")
    auth = AuthRequest(portal.client_id, scope="openid profile offline_access")
    code = oidc.authorize_as(client, auth, "dana.rivera")["code"]
    tokens = oidc.redeem(client, auth, code, portal.client_secret)
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    assert {"id_token", "access_token", "refresh_token"} <= set(tokens.get_json())
    refreshed = client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens.get_json()["refresh_token"]},
        headers=oidc.basic_auth(portal.client_id, portal.client_secret),
    )
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)


class EndsServerConnections:
    """Ends every server connection once, just before a statement of the next request: its first
    (PgBouncer then has none to give it), or one inside a transaction that ran another already
    (the server connection the transaction holds goes away under it)."""

    def __init__(self, inside_a_transaction: bool) -> None:
        self.inside_a_transaction = inside_a_transaction
        self.transactions: set[int] = set()
        self.ended = 0

    def __call__(self, conn: Connection, *args: Any) -> None:
        if self.ended:
            return
        transaction = id(conn.get_transaction())
        if not self.inside_a_transaction or transaction in self.transactions:
            self.ended = terminate_server_connections()
        self.transactions.add(transaction)


@pytest.fixture
def ends_connections(app: Flask) -> Iterator[Callable[[bool], EndsServerConnections]]:
    listeners: list[EndsServerConnections] = []

    def arm(inside_a_transaction: bool) -> EndsServerConnections:
        listener = EndsServerConnections(inside_a_transaction)
        event.listen(db.engine, "before_cursor_execute", listener)
        listeners.append(listener)
        return listener

    yield arm
    for listener in listeners:
        event.remove(db.engine, "before_cursor_execute", listener)


@pytest.mark.parametrize("inside", [False, True], ids=["before-the-transaction", "inside-the-transaction"])
def test_a_read_survives_the_server_connections_ending(
    client: FlaskClient,
    make_client: Callable[..., RegisteredTestClient],
    ends_connections: Callable[[bool], EndsServerConnections],
    inside: bool,
) -> None:
    portal = make_client()
    client.get(AuthRequest(portal.client_id).url())  # the pool holds server connections
    ending = ends_connections(inside)
    response = client.get(AuthRequest(portal.client_id).url())

    assert ending.ended >= 1
    assert response.status_code == 303  # served, or run once more on a new server connection
    assert client.get(AuthRequest(portal.client_id).url()).status_code == 303


@pytest.mark.parametrize("inside", [False, True], ids=["before-the-transaction", "inside-the-transaction"])
def test_a_sign_in_during_the_server_connections_ending_answers_303_or_503_then_works(
    client: FlaskClient,
    make_account: Callable[..., Account],
    ends_connections: Callable[[bool], EndsServerConnections],
    inside: bool,
) -> None:
    make_account(username="dana.rivera")
    page = client.get("/signin")
    token = csrf_token(page.get_data(as_text=True))
    form = {"csrf_token": token, "username": "dana.rivera", "password": PASSWORD}
    ending = ends_connections(inside)
    response = client.post("/signin", data=form)

    assert ending.ended >= 1
    assert response.status_code in (303, 503), response.get_data(as_text=True)[:300]
    if response.status_code == 503:
        assert response.headers["Retry-After"] == "5"
        # The browser sends the form again, and it works without a restart of anything.
        response = client.post("/signin", data=form)
    assert response.status_code == 303


def test_a_roster_import_stages_its_rows_in_one_transaction_through_the_pooler(app: Flask) -> None:
    # Temporary tables (ON COMMIT DROP) and the batched reads over them live in the import's one
    # transaction, so they stay on its server connection; run it twice to reuse the connections.
    for created in (3, 0):
        result = app.test_cli_runner().invoke(args=["roster", "import", str(ROSTER), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["created"]["students"] == created


def test_no_session_state_is_set_outside_a_transaction() -> None:
    # SET without LOCAL, session advisory locks and LISTEN would stay on a server connection
    # that the next client gets; the provider's code uses none (SET LOCAL only).
    session_state = re.compile(
        r"pg_advisory_lock(_shared)?\(|\bLISTEN\b|WITH HOLD"
        r"""|["']SET (?!LOCAL\b|NULL\b|DEFAULT\b)"""  # SET LOCAL ends with the transaction
    )
    root = Path(__file__).resolve().parents[2] / "idp"
    offending = [
        f"{path.relative_to(root)}: {match.group(0)}"
        for path in sorted(root.rglob("*.py"))
        for match in session_state.finditer(path.read_text())
    ]
    assert offending == []
