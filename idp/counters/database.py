"""Counters in the database: every process and instance sees the same counts, each change one statement.

The stand-in while Redis is down (``FallbackCounters``), and the keeper of Redis's locks
(``DurableLocks``). Each change is one ``INSERT … ON CONFLICT (key) DO UPDATE … RETURNING``
(SQLite 3.35 or later, PostgreSQL), in a short transaction on a connection of its own from the
engine, not in the request's session: a count survives the request rolling back, and no
connection stays taken while argon2 runs (the sign-in commits its read before it counts). The one
exception is SQLite's single writer (``_shared``). Time is the injected clock's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Engine,
    Row,
    Select,
    bindparam,
    case,
    delete,
    literal,
    null,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, scoped_session

from idp.clock import Clock
from idp.counters.models import CounterEntry
from idp.counters.store import Attempt, Threshold, Window
from idp.db import DbSession, UTCDateTime

# The upsert is written once; each dialect's ``insert`` gives it ``on_conflict_do_update``.
INSERTS: dict[str, Callable[..., Any]] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


# The two reads, by primary key; compiled once per engine (``_Read``), as a lock check runs on every sign-in.
LOCKED_UNTIL = select(CounterEntry.locked_until).where(CounterEntry.key == bindparam("key"))
WINDOW = select(CounterEntry.counted, CounterEntry.count_ends).where(CounterEntry.key == bindparam("key"))


def _at(moment: datetime) -> ColumnElement[datetime]:
    return literal(moment, UTCDateTime())


@dataclass(frozen=True)
class _Read:
    """A read by ``key``, compiled for one dialect: the SQL its driver takes, and how to read the row."""

    statement: Select[*tuple[Any, ...]]
    sql: str
    positional: bool
    processors: Sequence[Callable[[Any], Any] | None]

    @classmethod
    def compile(cls, statement: Select[*tuple[Any, ...]], dialect: Dialect) -> _Read:
        compiled = statement.compile(dialect=dialect)
        types = [column.type.dialect_impl(dialect) for column in statement.selected_columns]
        processors = [type_.result_processor(dialect, None) for type_ in types]
        return cls(statement, str(compiled), compiled.positiontup is not None, processors)

    def row(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(
            value if process is None else process(value)
            for value, process in zip(values, self.processors, strict=True)
        )


class DatabaseCounters:
    """The same counters as ``RedisCounters``, in the ``counter_entry`` table."""

    def __init__(self, engine: Engine, clock: Clock, session: DbSession | None = None) -> None:
        self.engine = engine
        self.clock = clock
        # The request's session (the app's ``Services.session``); None where there is no request.
        self.session = session
        self._insert = INSERTS[engine.dialect.name]
        self._locked_until = _Read.compile(LOCKED_UNTIL, engine.dialect)
        self._window = _Read.compile(WINDOW, engine.dialect)

    def attempt(self, key: str, threshold: Threshold) -> Attempt:
        now = self.clock.now()
        locked = CounterEntry.locked_until > now
        counted = case((CounterEntry.count_ends > now, CounterEntry.counted), else_=0) + 1
        reaches = counted >= threshold.limit
        locks_at_once = threshold.limit <= 1
        row = self._upsert(
            key,
            {
                "counted": 1,
                "count_ends": None if locks_at_once else now + threshold.window,
                "locked_until": now + threshold.lock if locks_at_once else None,
            },
            {
                # A refusal counts nothing, and its 0 tells its answer from the locking attempt's.
                "counted": case((locked, 0), else_=counted),
                "count_ends": case(
                    (locked | reaches, null()),
                    (CounterEntry.count_ends > now, CounterEntry.count_ends),
                    else_=_at(now + threshold.window),
                ),
                "locked_until": case(
                    (locked, CounterEntry.locked_until), (reaches, _at(now + threshold.lock)), else_=null()
                ),
            },
        )
        if row.locked_until is not None and row.locked_until > now:
            if row.counted == 0:
                return Attempt(granted=False, locked_for=row.locked_until - now)
            return Attempt(granted=True, count=row.counted, locks=True)
        return Attempt(granted=True, count=row.counted)

    def lock(self, key: str, duration: timedelta) -> None:
        """Lock ``key`` for ``duration`` from now (a lock Redis set), keeping a later one; clear its count."""
        until = self.clock.now() + duration
        self._upsert(
            key,
            {"counted": 0, "count_ends": None, "locked_until": until},
            {
                "counted": 0,
                "count_ends": null(),
                "locked_until": case(
                    (CounterEntry.locked_until > until, CounterEntry.locked_until), else_=_at(until)
                ),
            },
        )

    def locked_for(self, key: str) -> timedelta | None:
        now = self.clock.now()
        row = self._read(self._locked_until, key)
        if row is None or row[0] is None or row[0] <= now:
            return None
        left: timedelta = row[0] - now
        return left

    def window(self, key: str) -> Window:
        now = self.clock.now()
        row = self._read(self._window, key)
        if row is None or row[1] is None or row[1] <= now:
            return Window(0, timedelta(0))
        return Window(row[0], row[1] - now)

    def reset(self, key: str) -> bool:
        now = self.clock.now()
        statement = delete(CounterEntry).where(CounterEntry.key == key)
        with self._transaction() as conn:
            row = conn.execute(statement.returning(CounterEntry.locked_until)).first()
        return row is not None and row.locked_until is not None and row.locked_until > now

    def increment(self, key: str, window: timedelta, amount: int = 1) -> Window:
        now = self.clock.now()
        live = CounterEntry.count_ends > now
        row = self._upsert(
            key,
            {"counted": amount, "count_ends": now + window},
            {
                "counted": case((live, CounterEntry.counted + amount), else_=amount),
                "count_ends": case((live, CounterEntry.count_ends), else_=_at(now + window)),
            },
        )
        return Window(row.counted, row.count_ends - now)

    def _upsert(self, key: str, insert: Mapping[str, Any], update: Mapping[str, Any]) -> Row[Any]:
        """Insert ``key``'s entry, or update it from its current values: one atomic statement.

        Every ``update`` expression reads the entry as it was before the statement (SQL's rule),
        and PostgreSQL's row lock or SQLite's write lock makes concurrent upserts of a key queue.
        """
        statement = (
            self._insert(CounterEntry)
            .values(key=key, **insert)
            .on_conflict_do_update(index_elements=[CounterEntry.key], set_=dict(update))
            .returning(CounterEntry.counted, CounterEntry.count_ends, CounterEntry.locked_until)
        )
        with self._transaction() as conn:
            row: Row[Any] = conn.execute(statement).one()
        return row

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """Open a short transaction on a connection of its own, committed at the end (or see ``_shared``)."""
        shared = self._shared()
        if shared is not None:
            yield shared.connection()
            return
        with self.engine.begin() as conn:
            yield conn

    def _shared(self) -> Session | None:
        """Return the session whose connection the counters must use, if any (else one of their own).

        SQLite has one writer, and a transaction holds it from its first statement (idp.db): while
        the request's transaction is open, a connection of the counters' own would wait for it in
        this very thread until the busy timeout. So there, and only there, the count is written in
        it; the pages that count with a transaction open (Access-ID checks, the password change, a
        reset's unlock) commit their refusals, and the count with them. A session handed a
        connection inside a transaction (the tests' rolled-back one, ``idp.extensions.Session``)
        is joined too, so that the rollback forgets the counts with the rest.
        """
        if self.session is None:
            return None
        current = self.session() if isinstance(self.session, scoped_session) else self.session
        handed = isinstance(current.bind, Connection) and current.bind.in_transaction()
        single_writer = self.engine.dialect.name == "sqlite" and current.in_transaction()
        return current if handed or single_writer else None

    def _read(self, read: _Read, key: str) -> tuple[Any, ...] | None:
        """Run one read on the driver's cursor, outside any transaction of SQLAlchemy's (or see ``_shared``).

        idp.db begins every SQLite transaction with ``BEGIN IMMEDIATE``, the write lock: a lock
        check would queue behind every writer. Alone, the statement takes none (a WAL reader
        waits for nobody); on PostgreSQL the pool rolls the driver's transaction back on return.
        """
        shared = self._shared()
        if shared is not None:
            found = shared.connection().execute(read.statement, {"key": key}).first()
            return None if found is None else tuple(found)
        params: list[str] | dict[str, str] = [key] if read.positional else {"key": key}
        with self.engine.connect() as conn:
            cursor = conn.connection.cursor()
            dbapi_error = conn.dialect.loaded_dbapi.Error
            try:
                cursor.execute(read.sql, params)
                row = cursor.fetchone()
            except dbapi_error as error:
                # The driver's own error, wrapped as SQLAlchemy wraps its statements' errors: a
                # dropped connection is then an OperationalError, answered 503 (idp.web.errors).
                raise DBAPIError.instance(
                    read.sql, params, error, dbapi_error, dialect=conn.dialect
                ) from error
            finally:
                cursor.close()
        return None if row is None else read.row(row)
