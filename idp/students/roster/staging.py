"""The rows of one import, staged in temporary tables of the import's own transaction.

Cross-file rules (a role names a user, a guardian names students, a sourcedId appears once) are
checked by the database over these tables, and the import reads them back in batches: the
process holds one batch at a time whatever the roster's size. The tables are temporary: on
PostgreSQL they go with the transaction (``ON COMMIT DROP``), and the importer drops them before
it commits (SQLite keeps a temporary table for the connection's life); a rollback removes them on
both, since their creation belongs to the transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Column, Integer, MetaData, Row, Table, Text, func, insert, select, text, tuple_

from idp.db import DbSession

# Not the models' metadata: Alembic never sees these tables.
metadata = MetaData()


def _table(name: str, *columns: Column[Any]) -> Table:
    return Table(name, metadata, *columns, prefixes=["TEMPORARY"], postgresql_on_commit="DROP")


def _text(name: str, *, index: bool = False) -> Column[Any]:
    return Column(name, Text, nullable=True, index=index)


orgs = _table(
    "roster_stage_org",
    Column("line", Integer, primary_key=True, autoincrement=False),
    _text("sourced_id", index=True),
    _text("status"),
    _text("name"),
    _text("type"),
    _text("code", index=True),
)
users = _table(
    "roster_stage_user",
    Column("line", Integer, primary_key=True, autoincrement=False),
    _text("sourced_id", index=True),
    _text("status"),
    _text("given_name"),
    _text("family_name"),
    # The id portals will know a student by: the user's identifier, else its sourcedId.
    _text("student_key", index=True),
    _text("email"),
    _text("grades"),
    _text("language"),
)
agents = _table(
    "roster_stage_agent",
    Column("line", Integer, primary_key=True, autoincrement=False),
    Column("position", Integer, primary_key=True, autoincrement=False),
    _text("user_sid", index=True),
    _text("agent_sid", index=True),
)
roles = _table(
    "roster_stage_role",
    Column("line", Integer, primary_key=True, autoincrement=False),
    _text("sourced_id", index=True),
    _text("status"),
    _text("user_sid", index=True),
    _text("role"),
    _text("role_type"),
    _text("org_sid"),
)
demographics = _table(
    "roster_stage_demographic",
    Column("line", Integer, primary_key=True, autoincrement=False),
    _text("sourced_id", index=True),
    _text("status"),
    _text("language"),
)
TABLES = (orgs, users, agents, roles, demographics)


def analyze(session: DbSession, *tables: str) -> None:
    """Refresh PostgreSQL's statistics of the tables named, which this transaction has just filled.

    Without them the planner takes a table of 100,000 rows for a few thousand (a guess from its
    columns' widths) and answers each batch's look-up of 1,000 keys by reading the whole table,
    so that an import grows with the square of its size. ANALYZE reads a sample of at most
    30,000 rows, this transaction's own included. SQLite's planner needs no statistics to probe
    an index for an ``IN`` list.
    """
    if session.get_bind().dialect.name == "postgresql":
        for table in tables:
            session.execute(text(f"ANALYZE {table}"))


def prefer_indexes(session: DbSession) -> None:
    """Have PostgreSQL price a random page read as a cached one, for this transaction only.

    Each batch looks up 1,000 keys in tables as large as the roster. With the default
    ``random_page_cost`` (4, a spinning disk's) the planner finds reading a whole table of
    50,000 rows cheaper than 1,000 index probes, and does so once per batch: the rows read grew
    with the square of the roster (113 per row imported at 10,000 students, 338 at 30,000; with
    1.1, the value PostgreSQL's documentation gives for cached or solid-state storage, 33 and 53).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL random_page_cost = 1.1"))


class Staging:
    """The temporary tables of one import, filled in batches."""

    def __init__(self, session: DbSession, *, batch_size: int) -> None:
        self.session = session
        self.batch_size = batch_size
        self._pending: dict[str, list[dict[str, Any]]] = {table.name: [] for table in TABLES}

    def create(self) -> None:
        connection = self.session.connection()
        # A table left by an earlier import on this connection (SQLite) starts empty again.
        metadata.drop_all(connection, checkfirst=True)
        metadata.create_all(connection)

    def drop(self) -> None:
        metadata.drop_all(self.session.connection(), checkfirst=True)

    def add(self, table: Table, **values: Any) -> None:
        pending = self._pending[table.name]
        pending.append(values)
        if len(pending) >= self.batch_size:
            self._write(table)

    def flush(self) -> None:
        """Write the rows still pending, then analyze the tables: nothing more is staged after."""
        for table in TABLES:
            self._write(table)
        # PostgreSQL's autovacuum never analyzes a temporary table.
        analyze(self.session, *(table.name for table in TABLES))

    def _write(self, table: Table) -> None:
        pending = self._pending[table.name]
        if pending:
            self.session.execute(insert(table), pending)
            pending.clear()

    def batches(self, table: Table) -> Iterator[Sequence[Row[Any]]]:
        """Yield the staged rows of ``table`` in line order, ``batch_size`` at a time."""
        last = 0
        while True:
            rows = self.session.execute(
                select(table).where(table.c.line > last).order_by(table.c.line).limit(self.batch_size)
            ).all()
            if not rows:
                return
            yield rows
            last = rows[-1].line

    def agent_batches(self) -> Iterator[Sequence[Row[Any]]]:
        """Yield the staged (user, agent) pairs in file order, ``batch_size`` at a time."""
        key = tuple_(agents.c.line, agents.c.position)
        last = (0, -1)
        while True:
            # A row-value comparison: an index range, where "line > a OR (line = a AND …)" reads
            # every earlier pair again.
            rows = self.session.execute(
                select(agents)
                .where(key > tuple_(*last))
                .order_by(agents.c.line, agents.c.position)
                .limit(self.batch_size)
            ).all()
            if not rows:
                return
            yield rows
            last = (rows[-1].line, rows[-1].position)

    def repeated(self, table: Table) -> Iterator[tuple[int, str, int]]:
        """Yield (line, sourcedId, first line) for every row whose sourcedId an earlier row has."""
        first = (
            select(table.c.sourced_id, func.min(table.c.line).label("first_line"))
            .group_by(table.c.sourced_id)
            .having(func.count() > 1)
            .subquery()
        )
        rows = self.session.execute(
            select(table.c.line, table.c.sourced_id, first.c.first_line)
            .join(first, first.c.sourced_id == table.c.sourced_id)
            .where(table.c.line > first.c.first_line)
            .order_by(table.c.line),
            execution_options={"yield_per": self.batch_size},
        )
        for line, sourced_id, first_line in rows:
            yield int(line), str(sourced_id), int(first_line)
