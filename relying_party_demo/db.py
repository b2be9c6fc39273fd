"""The portal's own small database: declarative base, UTC timestamps, engine and schema.

The portal has no migrations: ``create_schema`` makes what is missing at start
(``metadata.create_all``), which is enough for a demo app whose rows are disposable (sessions,
their tokens, and the logout tokens it has acted on). New data goes in new tables, which
``create_all`` adds to an existing database, never in new columns, which it would not.
A real portal would keep its schema under Alembic, as the provider does.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock
from sqlalchemy import DateTime, Engine, MetaData, TypeDecorator, create_engine, event
from sqlalchemy.orm import DeclarativeBase, registry

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back timezone-aware (SQLite keeps no zone)."""

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
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={datetime: UTCDateTime()},
    )


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite in WAL mode with a busy timeout, shared by every worker."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    # The driver opens write transactions with BEGIN IMMEDIATE: a second worker's write
    # waits for the lock (busy timeout) instead of failing with "database is locked".
    engine = create_engine(url, connect_args={"timeout": 10, "isolation_level": "IMMEDIATE"})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # A session's tokens go with it (ON DELETE CASCADE); SQLite enforces foreign keys only when asked.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_schema(engine: Engine, lock_path: Path) -> None:
    """Create the missing tables; workers starting together take turns under a file lock."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)):
        Base.metadata.create_all(engine)
