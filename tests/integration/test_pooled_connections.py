"""Pooled PostgreSQL connections the server closed are replaced before use, without a ping per checkout.

``idp.db`` replaces SQLAlchemy's ``pool_pre_ping`` (a ``SELECT 1`` round trip at every checkout)
with a check of the idle connection's socket, and a ping only when that check or a long idle
time says the connection may be gone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from flask import Flask
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import Pool

from idp import db as idp_db
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


@pytest.fixture
def without_liveness_check() -> Iterator[None]:
    event.remove(Pool, "checkout", idp_db._check_alive)
    try:
        yield
    finally:
        event.listen(Pool, "checkout", idp_db._check_alive)


def test_no_pre_ping_is_configured(app: Flask) -> None:
    assert db.engine.pool._pre_ping is False


def test_a_connection_the_server_closed_is_replaced_before_use(postgresql: str) -> None:
    pid = backend_pid()
    terminate(pid)
    assert backend_pid() != pid


def test_without_the_check_the_closed_connection_fails_the_next_request(
    postgresql: str, without_liveness_check: None
) -> None:
    # What the check is for: the pool would hand out the dead connection.
    pid = backend_pid()
    terminate(pid)
    with pytest.raises(OperationalError):
        backend_pid()
    db.session.rollback()
    assert backend_pid() != pid  # SQLAlchemy then discards it


def test_a_live_idle_connection_needs_no_ping_until_it_has_idled_long(postgresql: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL) as conn:
        conn.execute("SELECT 1")
        conn.rollback()
        assert not idp_db.needs_ping(conn, idle_for=0.5)
        assert idp_db.needs_ping(conn, idle_for=idp_db.PING_AFTER_IDLE_S)
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        deadline = time.monotonic() + 5
        while not idp_db.needs_ping(conn, idle_for=0.5):
            assert time.monotonic() < deadline, "the closed socket never became readable"
            time.sleep(0.02)
