"""Declarative base, naming convention and the column types every model shares."""

from __future__ import annotations

import secrets
import sqlite3
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeAlias

from sqlalchemy import Boolean, DateTime, MetaData, String, TypeDecorator, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, registry, scoped_session

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


@event.listens_for(Engine, "begin")
def _begin_immediate(connection: Any) -> None:
    # WAL admits one writer: taking the write lock at BEGIN makes a second worker
    # wait (busy_timeout) instead of failing later with "database is locked".
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def engine_options(database_url: str) -> dict[str, Any]:
    """Return the engine's options for ``database_url``: fit for PgBouncer in transaction mode."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return {}  # a file has no server to close a pooled connection
    options: dict[str, Any] = {
        # A pooled connection the server closed (a restart, a failover, an idle timeout) is
        # replaced before use.
        "pool_pre_ping": True,
    }
    if url.get_driver_name() == "psycopg":
        # psycopg 3 prepares a statement on the server after five runs and then names it. Behind
        # PgBouncer in transaction mode (before 1.21's max_prepared_statements) the next run may
        # reach another server connection, where that name does not exist. Never prepare, with
        # or without a pooler: a forgotten setting would fail only under load, while preparing
        # saves a short statement's parse and plan (docs/operations/scaling.md has the figures).
        options["connect_args"] = {"prepare_threshold": None}
    return options


def import_models() -> None:
    """Import every model, so that the metadata (and Alembic) sees all tables."""
    import idp.accounts.models
    import idp.accounts.policy_models
    import idp.accounts.recovery_models
    import idp.admin.models
    import idp.audit
    import idp.counters.models
    import idp.keys.models
    import idp.mail.models
    import idp.oauth.models
    import idp.students.models
    import idp.students.roster.models  # noqa: F401


def migrations_directory() -> Path:
    """Return the Alembic folder, shipped inside the ``idp`` package.

    A wheel holds the files (package data), so an installed provider migrates from any folder.
    """
    # Installed packages live on the file system (pip never installs a zipped wheel), so the
    # resource is a real folder that Alembic can read.
    return Path(str(resources.files("idp") / "migrations"))
