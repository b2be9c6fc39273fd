"""The counters in the database (Redis's fallback, and the keeper of its locks), on both backends.

What every store promises (tests/counter_contract.py), then what only a database shows:
concurrent attempts from many connections, counts committed at once on a
connection of their own (none held between operations), reads that wait for no writer.
Each operation commits on a connection of its own: on SQLite a test's open transaction would
hold the write lock they need, so every test here runs without one (``commits``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import Connection, select, text, update

from idp.accounts.lockout import Lockout
from idp.clock import FrozenClock
from idp.counters.database import DatabaseCounters
from idp.counters.models import CounterEntry
from idp.counters.store import Attempt, Keys, Threshold, Window
from idp.extensions import db
from idp.policy import LockoutPolicy
from tests.counter_contract import *  # noqa: F403 (the contract's tests, run on these counters)

pytestmark = pytest.mark.commits

MINUTE = timedelta(minutes=1)
THREE_PER_MINUTE = Threshold(limit=3, window=MINUTE, lock=timedelta(minutes=5))


@pytest.fixture
def frozen() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def counters(app: Flask, frozen: FrozenClock) -> DatabaseCounters:
    return DatabaseCounters(db.engine, frozen)


def rows() -> list[tuple[str, int]]:
    """The table's entries, read on a connection of the test's own."""
    with db.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(CounterEntry.key, CounterEntry.counted))]


@pytest.fixture
def counter_clock(frozen: FrozenClock) -> FrozenClock:
    return frozen


# --- what every store promises (tests/counter_contract.py), then what the table holds ----------
def test_an_unknown_key_leaves_no_row(counters: DatabaseCounters) -> None:
    counters.window("never"), counters.locked_for("never"), counters.reset("never")
    assert rows() == []


def test_a_reset_deletes_the_row_and_leaves_the_others(counters: DatabaseCounters) -> None:
    counters.increment("a", MINUTE, amount=5)
    counters.increment("b", MINUTE)
    for _ in range(3):
        counters.attempt("k", THREE_PER_MINUTE)
    counters.reset("a")
    counters.reset("k")
    assert rows() == [("b", 1)]


def test_a_lock_redis_set_is_kept_and_keeps_a_later_one(
    counters: DatabaseCounters, frozen: FrozenClock
) -> None:
    counters.attempt("k", THREE_PER_MINUTE)
    counters.lock("k", timedelta(minutes=5))  # what DurableLocks writes when Redis locks
    assert counters.window("k").count == 0
    assert counters.attempt("k", THREE_PER_MINUTE) == Attempt(granted=False, locked_for=timedelta(minutes=5))
    frozen.advance(MINUTE)
    counters.lock("k", timedelta(minutes=1))  # a shorter lock does not cut the longer one
    assert counters.locked_for("k") == timedelta(minutes=4)


# --- where the counts are written ---------------------------------------------------------
def test_each_change_is_committed_at_once_and_no_connection_stays_taken(
    app: Flask, frozen: FrozenClock
) -> None:
    counters = DatabaseCounters(db.engine, frozen, db.session)  # as the app builds it
    assert counters.attempt("k", THREE_PER_MINUTE).count == 1
    assert db.engine.pool.checkedout() == 0
    assert rows() == [("k", 1)]  # another connection sees it: committed
    counters.increment("ip", MINUTE)
    assert counters.window("ip").count == 1 and counters.locked_for("k") is None
    assert db.engine.pool.checkedout() == 0
    # What the request does next and rolls back takes no count with it.
    db.session.execute(text("SELECT 1"))
    db.session.rollback()
    assert sorted(rows()) == [("ip", 1), ("k", 1)]


def test_on_postgresql_a_count_outlives_the_open_request_transaction_rolling_back(
    app: Flask,
    frozen: FrozenClock,
) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL counts beside an open transaction; SQLite's single writer, in it")
    counters = DatabaseCounters(db.engine, frozen, db.session)
    db.session.execute(text("SELECT 1"))  # the request's transaction is open
    assert counters.attempt("k", THREE_PER_MINUTE).count == 1
    db.session.rollback()
    assert rows() == [("k", 1)]


def test_on_sqlite_a_count_inside_an_open_request_transaction_is_written_in_it(
    app: Flask,
    frozen: FrozenClock,
) -> None:
    if db.engine.dialect.name != "sqlite":
        pytest.skip("only SQLite has one writer, which the request's open transaction holds")
    counters = DatabaseCounters(db.engine, frozen, db.session)
    db.session.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: this session holds the write lock
    started = time.monotonic()
    assert counters.attempt("k", THREE_PER_MINUTE).count == 1
    assert counters.attempt("k", THREE_PER_MINUTE).count == 2  # and reads its own count
    assert time.monotonic() - started < 2  # not the busy timeout (10 s) of a second connection
    db.session.rollback()
    assert rows() == []
    db.session.execute(text("SELECT 1"))
    counters.attempt("k", THREE_PER_MINUTE)
    db.session.commit()  # the pages that count in their transaction commit their refusals
    assert rows() == [("k", 1)]


@contextmanager
def writer() -> Iterator[Connection]:
    """Another connection in the middle of a write transaction, rolled back at the end."""
    with db.engine.connect() as conn, conn.begin() as transaction:
        yield conn
        transaction.rollback()


def test_reads_wait_for_no_writer(counters: DatabaseCounters) -> None:
    for _ in range(3):
        counters.attempt("k", THREE_PER_MINUTE)
    counters.increment("ip", MINUTE)
    with writer() as conn:
        conn.execute(update(CounterEntry).values(counted=99))  # row locks; on SQLite the write lock
        started = time.monotonic()
        assert counters.locked_for("k") == timedelta(minutes=5)
        assert counters.window("ip") == Window(1, MINUTE)  # the committed count, not the writer's
        assert time.monotonic() - started < 2


def test_keys_are_the_ones_redis_gets_never_the_username(counters: DatabaseCounters) -> None:
    keys = Keys.derive("idp:", "a-secret-key")
    lockout = Lockout(counters, keys, LockoutPolicy(threshold=3))
    for _ in range(3):
        lockout.begin(lockout.user_key("Dana.Rivera "))
    ((key, _),) = rows()
    assert key == lockout.user_key("dana.rivera") == keys.name("lockout:user", "dana.rivera")
    assert "dana" not in key.lower()
    assert lockout.unlock_username("DANA.RIVERA") is True
    assert rows() == []
