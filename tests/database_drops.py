"""Dropping a PostgreSQL connection as a restart or a failover would: ``pg_terminate_backend``."""

from __future__ import annotations

import time

import psycopg

from tests.conftest import POSTGRES_ADMIN_URL


def terminate(pid: int) -> None:
    """End backend ``pid`` and return once the server has let it go (polled: it only signals)."""
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 30
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, f"backend {pid} did not exit"
            time.sleep(0.01)


def terminate_application(database: str, application_name: str) -> int:
    """End every connection named ``application_name`` to ``database``, as a PostgreSQL restart
    would; return once the backends are gone, with how many there were."""
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        pids = [
            pid
            for (pid,) in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                (database, application_name),
            )
        ]
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 30
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone():
            assert time.monotonic() < deadline, f"backends {pids} did not exit"
            time.sleep(0.01)
    return len(pids)
