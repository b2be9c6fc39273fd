"""Whether another connection could write right now: what a request must not hold while it waits."""

from __future__ import annotations

import sqlite3

from sqlalchemy.engine.url import make_url


def sqlite_writer_can_start(database_url: str) -> bool:
    """Whether another connection can take SQLite's write lock at once (no busy wait)."""
    path = make_url(database_url).database
    assert path
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()
