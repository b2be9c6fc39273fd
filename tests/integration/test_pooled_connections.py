"""Pooled PostgreSQL connections the server closed are replaced before use (SQLAlchemy's pre-ping)."""

from __future__ import annotations

import time

import psycopg
import pytest
from flask import Flask
from sqlalchemy import text

from idp.extensions import db
from tests.conftest import POSTGRES_ADMIN_URL

# Connections come and go from the pool here: no test transaction may hold one.
pytestmark = pytest.mark.commits


@pytest.fixture
def postgresql(app: Flask, database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("a SQLite file has no server to close the connection")
    return database_url


def backend_pid() -> int:
    pid = int(db.session.execute(text("SELECT pg_backend_pid()")).scalar_one())
    db.session.commit()  # the connection goes back to the pool
    return pid


def terminate(pid: int) -> None:
    """End backend ``pid`` as a server restart or an idle timeout would, and wait until it is gone."""
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 5
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, "the backend did not exit"
            time.sleep(0.02)


def test_a_connection_the_server_closed_is_replaced_before_use(postgresql: str) -> None:
    pid = backend_pid()
    terminate(pid)
    assert backend_pid() != pid


def test_a_postgresql_pool_checks_before_use_and_a_sqlite_file_needs_not(
    app: Flask, database_url: str
) -> None:
    assert db.engine.pool._pre_ping is database_url.startswith("postgresql")
