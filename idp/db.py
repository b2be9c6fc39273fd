"""Declarative base, naming convention and the column types every model shares."""

from __future__ import annotations

import secrets
import select
import sqlite3
import time
from datetime import UTC, datetime
from typing import Annotated, Any, TypeAlias

import psycopg
from sqlalchemy import Boolean, DateTime, MetaData, String, TypeDecorator, event, exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, registry, scoped_session
from sqlalchemy.pool import ConnectionPoolEntry, Pool

# Stable constraint names keep Alembic diffs identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite keeps no zone; PostgreSQL's timestamptz does. This type makes both
    behave the same so that comparisons with ``clock.now()`` never mix naive and aware.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Services take a plain Session in unit tests and Flask-SQLAlchemy's scoped session in the app.
DbSession: TypeAlias = Session | scoped_session[Any]


def new_id() -> str:
    """Return a fresh opaque identifier (used as primary key and as ``sub``)."""
    return secrets.token_hex(16)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={datetime: UTCDateTime()},
    )


id_pk = Annotated[str, mapped_column(String(32), primary_key=True, default=new_id)]
utc_now = Annotated[datetime, mapped_column(UTCDateTime(), default=utcnow, nullable=False)]
utc_time = Annotated[datetime, mapped_column(UTCDateTime(), nullable=False)]
utc_time_or_none = Annotated[datetime | None, mapped_column(UTCDateTime(), nullable=True)]
bool_false = Annotated[bool, mapped_column(Boolean(), default=False, nullable=False)]
bool_true = Annotated[bool, mapped_column(Boolean(), default=True, nullable=False)]
sha256_hex = Annotated[str, mapped_column(String(64), nullable=False)]


@event.listens_for(Engine, "connect")
def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """WAL, a busy timeout and driver autocommit off, so ``BEGIN IMMEDIATE`` is ours to send."""
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # Let SQLAlchemy's "begin" event below issue the BEGIN (pysqlite would defer it).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# A transaction begun with this execution option reads before it writes (``begin_reading``).
READS_FIRST = "idp_reads_first"


@event.listens_for(Engine, "begin")
def _begin_immediate(connection: Any) -> None:
    # WAL admits one writer: taking the write lock at BEGIN makes a second worker
    # wait (busy_timeout) instead of failing later with "database is locked".
    if connection.dialect.name == "sqlite" and not connection.get_execution_options().get(READS_FIRST):
        _take_write_lock(connection.connection.driver_connection)


def _take_write_lock(dbapi_connection: sqlite3.Connection) -> None:
    # On the driver's connection: SQLAlchemy's statement machinery for a bare BEGIN cost a tenth of
    # a millisecond per transaction; the error is raised as SQLAlchemy would have wrapped it.
    try:
        dbapi_connection.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as error:
        raise exc.OperationalError("BEGIN IMMEDIATE", None, error) from error


def begin_reading(session: DbSession) -> Connection:
    """Begin a transaction that reads first and takes SQLite's write lock only at ``start_writing``.

    For work that reads, does something slow, then writes (a sign-in: look up, argon2, record):
    one transaction and one connection throughout, yet no other writer queues behind the slow
    part. Whatever transaction ``session`` had is committed first. On SQLite the reads run in
    autocommit (each statement its own snapshot; no lock is held between them); on PostgreSQL
    it is an ordinary transaction, whose reads block no writer. Return the transaction's
    connection, for ``start_writing``.
    """
    current = session() if isinstance(session, scoped_session) else session
    if current.in_transaction():
        current.commit()
    return current.connection(execution_options={READS_FIRST: True})


def start_writing(connection: Connection) -> None:
    """Take the write lock of a ``begin_reading`` transaction (SQLite); elsewhere nothing to do.

    Call it before the first write: until then a SQLite write would commit on its own.
    """
    if connection.dialect.name != "sqlite":
        return
    dbapi_connection = connection.connection.driver_connection
    assert isinstance(dbapi_connection, sqlite3.Connection)
    if not dbapi_connection.in_transaction:
        _take_write_lock(dbapi_connection)


# A pooled PostgreSQL connection idle this long is pinged before use: a NAT or firewall may have
# dropped it silently, which nothing on the socket shows.
PING_AFTER_IDLE_S = 30.0
_IDLE_SINCE = "idp.idle_since"


def needs_ping(dbapi_connection: psycopg.Connection[Any], idle_for: float) -> bool:
    """Return whether a pooled PostgreSQL connection must be pinged before it is handed out.

    An idle connection has nothing to read: a readable socket means the server closed it (a
    restart, ``pg_terminate_backend``, ``idle_session_timeout``: PostgreSQL sends its FATAL
    message first) or sent something unasked; either way a real ping decides.
    """
    if dbapi_connection.closed or dbapi_connection.broken or idle_for >= PING_AFTER_IDLE_S:
        return True
    try:
        # poll, not select: no limit on the descriptor's number; a hang-up or error counts too.
        poller = select.poll()
        poller.register(dbapi_connection.pgconn.socket, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.OperationalError):
        return True


@event.listens_for(Pool, "checkin")
def _note_idle(_dbapi_connection: Any, record: ConnectionPoolEntry | None) -> None:
    if record is not None:
        record.info[_IDLE_SINCE] = time.monotonic()


@event.listens_for(Pool, "checkout")
def _check_alive(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
    """Pessimistic disconnect handling without a round trip per checkout (replaces pool_pre_ping).

    SQLAlchemy's ``pool_pre_ping`` sends ``SELECT 1`` at every checkout: a round trip on every
    request (two on a sign-in). Here a ping is sent only when ``needs_ping`` says so; a dead
    connection raises ``DisconnectionError``, which makes the pool replace it and retry, as
    ``pool_pre_ping`` would.
    """
    if not isinstance(dbapi_connection, psycopg.Connection):
        return  # SQLite: a file cannot drop the connection
    idle_since = record.info.get(_IDLE_SINCE)
    if idle_since is None:
        return  # just connected
    if not needs_ping(dbapi_connection, time.monotonic() - idle_since):
        return
    try:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        dbapi_connection.execute("SELECT 1")
        dbapi_connection.autocommit = autocommit
    except psycopg.Error as error:
        raise exc.DisconnectionError(f"pooled connection is gone: {error}") from error
