"""The sign-in with 1,000 and with 1,000,000 accounts on PostgreSQL, measured in one run.

The issue's target: the sign-in's p95 with a million accounts and 1.5 million guardian links
stays within 1.10x of its p95 with a thousand.

Run from the repository root (PostgreSQL as the tests use it, ``IDP_BENCH_POSTGRES_ADMIN`` or
``--admin-url``; Redis on 127.0.0.1:6379 or ``--redis-url``)::

    .venv/bin/python -m bench.signin_million [--accounts 1000000] [--small 1000] [--rounds 400]
        [--warmup 20] [--plans] [--check]

- **Two districts at once.** Two throw-away databases (``idp_bench_signin_<size>_<pid>``,
  dropped afterwards) are built with ``bench.district``, as ``bench.admin_search`` builds its own:
  ``COPY`` at the revision before the search's indexes, then the later migrations (indexes built
  on the full tables), then ``VACUUM ANALYZE``. At a million: 800,000 students and about
  1,570,000 guardian links. Every account's stored hash is one argon2id hash of the same password
  with the provider's parameters (hashing a million would take hours), so no sign-in rehashes.
- **The same provider against each.** Two gunicorns (one sync worker each) run the same code
  with the same settings but the database; the lockout counters live in the real Redis under a
  key prefix of each provider's own (deleted afterwards).
- **Accounts drawn across the whole table.** Each size's accounts are drawn once with ``ORDER
  BY random()`` among its confirmed, unexpired accounts, and each is signed in once (at the
  small size, only if there are rounds enough to need it, they come round again). So a sign-in
  at a million finds its account's row and index entries wherever they are: mostly outside
  PostgreSQL's shared buffers (in the OS page cache), as a morning's first sign-ins of a district
  would, while the thousand fits in the buffers. Each database's shared-buffer hit ratio over
  the run is printed to show it, and how many of its account updates were HOT (heap-only: no
  index entry written, which needs room on the row's page).
- **Alternating rounds.** Each round takes one sign-in against each provider and one bare
  argon2id verify, rotating which goes first, so that the machine's noise falls on all alike. A
  sign-in is a fresh browser: ``GET /signin`` (not timed), then the ``POST`` (timed, answered
  303), as ``bench.signin_vs_argon2`` takes it.
- **Every statement's plan.** After the rounds, one more sign-in at each size runs in-process
  with the same settings; just before each of its statements the same statement runs under
  ``EXPLAIN (ANALYZE, BUFFERS, WAL)`` on a savepoint that is rolled back. A line per statement
  says how it read its tables at the large size, with its time at both; a sequential scan of a
  table over 10,000 rows is called out. ``--plans`` prints the plans. (The in-process
  connection is new: its first statements also load the catalog caches, which a pooled
  connection of the provider has done long before.)

It prints p50, p95 and p99 per size, the ratio of the p95s, the argon2 verify alone, and the
load average. Progress goes to stderr. The exit code is 0 (a measurement, not a test) unless
``--check`` is given and the ratio exceeds the target.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import redis
from flask import Flask
from sqlalchemy import event

from bench.district import build, throwaway_database
from bench.harness import (
    POSTGRES_ADMIN_URL,
    describe_machine,
    free_port,
    gunicorn,
    load_average,
)
from bench.signin_vs_argon2 import (
    PASSWORD,
    Argon2Params,
    argon2_sample,
    csrf_token,
    interleave,
    provider_env,
    signin_sample,
)
from idp import create_app
from idp.config import Settings
from idp.extensions import db
from idp.logs import send_logs_to_stderr

TARGET_RATIO = 1.10
# A sequential scan of a table this big in a sign-in is a look-up that grows with the district.
SCAN_WORTH_NAMING = 10_000
SCAN_NODE = re.compile(
    r"(Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan|Bitmap Index Scan)(?: Backward)?"
    r"(?: using (\S+))? on (\S+)"
)
PLANNED = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")


def in_process_app(env: dict[str, str]) -> Flask:
    """The provider with ``env``'s settings, in this process, telling only of what went wrong."""
    send_logs_to_stderr()  # stdout is the report
    app = create_app(Settings.from_env(env))
    for name in ("idp", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return app


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class District:
    """One size's database, the provider's settings for it, and the accounts to sign in."""

    accounts: int
    url: str
    port: int
    env: dict[str, str]
    usernames: list[str] = field(default_factory=list)
    links: int = 0

    @property
    def database(self) -> str:
        return self.url.rsplit("/", 1)[1]


@contextmanager
def district(
    size: int,
    admin_url: str,
    workdir: Path,
    redis: tuple[str, str],
    params: Argon2Params,
    stored_hash: str,
) -> Iterator[District]:
    """Build a district of ``size`` accounts in a database of its own; drop it afterwards.

    ``redis``: the provider's Redis URL and the run's key prefix.
    """
    name = f"idp_bench_signin_{size}_{os.getpid()}"
    folder = workdir / str(size)
    folder.mkdir()
    redis_url, prefix = redis
    with throwaway_database(admin_url, name) as url:
        port = free_port()
        env = provider_env(folder, port, params, redis_url)
        env["IDP_DATABASE_URL"] = url.replace("postgresql://", "postgresql+psycopg://", 1)
        env["IDP_REDIS_KEY_PREFIX"] = f"{prefix}{size}:"
        app = in_process_app(env)
        try:
            progress(f"building {size:,} accounts")
            built = build(
                app,
                url,
                size,
                random.Random(size),  # noqa: S311 (generated names, not secrets)
                datetime.now(UTC),
                password_hash=stored_hash,
                progress=progress,
            )
            progress(
                f"{size:,} accounts: loaded in {built.load_seconds:.0f} s, "
                f"migrated and analyzed in {built.index_seconds:.0f} s"
            )
        finally:
            with app.app_context():
                db.engine.dispose()
        yield District(size, url, port, env)


def draw_usernames(place: District, count: int) -> None:
    """Draw ``count`` accounts that may sign in, uniformly across the whole table, in random order."""
    with psycopg.connect(place.url) as conn:
        rows = conn.execute(
            "SELECT username FROM account WHERE status = 'confirmed' AND expires_at IS NULL"
            " ORDER BY random() LIMIT %s",
            (count,),
        ).fetchall()
        links = conn.execute("SELECT count(*) FROM guardian_link").fetchone()
    place.usernames = [row[0] for row in rows]
    place.links = links[0] if links else 0


def counters(place: District) -> tuple[int, int, int, int]:
    """Shared-buffer hits and reads (from the OS) of the district's database so far, and its
    account rows updated, and of those the HOT updates (no index entry written)."""
    with psycopg.connect(place.url) as conn:
        row = conn.execute(
            "SELECT d.blks_hit, d.blks_read, t.n_tup_upd, t.n_tup_hot_upd"
            " FROM pg_stat_database d, pg_stat_user_tables t"
            " WHERE d.datname = current_database() AND t.relname = 'account'"
        ).fetchone()
    return (row[0], row[1], row[2], row[3]) if row else (0, 0, 0, 0)


def wait_for_no_backends(admin_url: str, database: str) -> None:
    """Wait until the provider's connections have gone: a backend's statistics are counted as it exits."""
    deadline = time.monotonic() + 30
    with psycopg.connect(admin_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)
            ).fetchone()
            if row is None or row[0] == 0:
                return
            time.sleep(0.1)


@dataclass(frozen=True)
class Percentiles:
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, samples_s: list[float]) -> Percentiles:
        ms = [s * 1000.0 for s in samples_s]
        cuts = statistics.quantiles(ms, n=100, method="inclusive")
        return cls(statistics.median(ms), cuts[94], cuts[98])

    def row(self, label: str) -> str:
        return f"  {label:28}{self.p50:>9.2f}{self.p95:>9.2f}{self.p99:>9.2f}"


def cycling(usernames: list[str]) -> Iterator[str]:
    while True:
        yield from usernames


@dataclass(frozen=True)
class PlannedStatement:
    statement: str
    plan: list[str]

    @property
    def execution_ms(self) -> float:
        line = next((line for line in self.plan if line.startswith("Execution Time:")), "")
        return float(line.split()[2]) if line else 0.0


def plans_of_one_signin(place: District, username: str) -> list[PlannedStatement]:
    """Sign ``username`` in in-process; return every statement it ran with its EXPLAIN (ANALYZE, BUFFERS)."""
    app = in_process_app(place.env)
    planned: list[PlannedStatement] = []

    def explain_first(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if executemany or not statement.lstrip().upper().startswith(PLANNED):
            return
        # The statement itself runs right after, in the same transaction: its plan is the one
        # it gets, and the savepoint leaves nothing of the explained run behind.
        with cursor.connection.cursor() as explaining:
            explaining.execute("SAVEPOINT bench_explain")
            explaining.execute(f"EXPLAIN (ANALYZE, BUFFERS, WAL) {statement}", parameters)
            plan = [row[0] for row in explaining.fetchall()]
            explaining.execute("ROLLBACK TO SAVEPOINT bench_explain")
            explaining.execute("RELEASE SAVEPOINT bench_explain")
        planned.append(PlannedStatement(" ".join(statement.split()), plan))

    try:
        client = app.test_client()
        page = client.get("/signin")
        form = {"username": username, "password": PASSWORD, "csrf_token": csrf_token(page.text)}
        with app.app_context():
            event.listen(db.engine, "before_cursor_execute", explain_first)
            try:
                answer = client.post("/signin", data=form)
            finally:
                event.remove(db.engine, "before_cursor_execute", explain_first)
        if answer.status_code != 303:
            raise RuntimeError(f"the in-process sign-in answered {answer.status_code}, not 303")
    finally:
        with app.app_context():
            db.engine.dispose()
    return planned


def table_sizes(url: str) -> dict[str, float]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT relname, reltuples FROM pg_class"
            " WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
        ).fetchall()
    return {name: tuples for name, tuples in rows}


def describe_plans(
    planned: list[PlannedStatement], beside: list[PlannedStatement], sizes: dict[str, float], full: bool
) -> int:
    """Print a line per statement of ``planned`` (how it reads its tables, its time beside that of
    the same statement in ``beside``), and with ``full`` its plan; return the sequential scans of
    big tables."""
    big_scans = 0
    small_ms = dict(enumerate(item.execution_ms for item in beside))
    for number, item in enumerate(planned, 1):
        scans = []
        for line in item.plan:
            found = SCAN_NODE.search(line)
            if found is None:
                continue
            kind, index, table = found.groups()
            scans.append(f"{kind} on {table}" + (f" using {index}" if index else ""))
            if kind == "Seq Scan" and sizes.get(table, 0) > SCAN_WORTH_NAMING:
                big_scans += 1
                scans[-1] += f"  <-- {sizes[table]:,.0f} rows"
        other = small_ms.get(number - 1)
        timing = f"{item.execution_ms:.3f} ms" + (f" (small: {other:.3f} ms)" if other is not None else "")
        executed = item.plan[
            : next((i for i, line in enumerate(item.plan) if line.startswith("Planning")), None)
        ]
        buffers = next((line.strip() for line in executed if "Buffers:" in line), "Buffers: none")
        wal = next((line.strip() for line in executed if "WAL:" in line), "WAL: none")
        head = item.statement if len(item.statement) <= 100 else item.statement[:97] + "..."
        print(f"  {number:>2}. {head}")
        print(
            f"      {'; '.join(scans) or 'no table read (an INSERT of one row)'}; {buffers}; {wal}; {timing}"
        )
        if full:
            for line in item.plan:
                print(f"        {line}")
    return big_scans


def measure(args: argparse.Namespace) -> float:
    params = Argon2Params.defaults()
    hasher = params.hasher()
    stored_hash = hasher.hash(PASSWORD)
    workdir = Path(tempfile.mkdtemp(prefix="idp-bench-million-"))
    prefix = f"idp-bench-million:{secrets.token_hex(6)}:"
    client = redis.Redis.from_url(args.redis_url, socket_timeout=2)
    print(f"machine: {describe_machine()}; load average at the start {load_average()}")
    with psycopg.connect(args.admin_url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        buffers = conn.execute("SHOW shared_buffers").fetchone()
    print(
        f"PostgreSQL {version[0] if version else '?'} (shared_buffers {buffers[0] if buffers else '?'}), "
        f"Redis at {args.redis_url}; argon2id t={params.time_cost} m={params.memory_kib} KiB "
        f"p={params.parallelism}; {args.rounds} rounds (+{args.warmup} warm-up)"
    )
    # One account more than the rounds take: the planned sign-in's, never signed in before.
    draws = args.rounds + args.warmup + 1
    try:
        with ExitStack() as stack:
            small, large = (
                stack.enter_context(
                    district(size, args.admin_url, workdir, (args.redis_url, prefix), params, stored_hash)
                )
                for size in (args.small, args.accounts)
            )
            for place in (small, large):
                draw_usernames(place, draws)
                print(
                    f"{place.accounts:,} accounts, {place.links:,} guardian links; "
                    f"{len(place.usernames):,} accounts drawn to sign in"
                    + (" (they come round again)" if len(place.usernames) < draws else "")
                )
            before = {place.accounts: counters(place) for place in (small, large)}
            with ExitStack() as servers:
                urls = [
                    servers.enter_context(
                        gunicorn(
                            "idp:create_app()",
                            place.env,
                            place.port,
                            1,
                            workdir / f"gunicorn-{place.accounts}.log",
                        )
                    )
                    for place in (small, large)
                ]
                drawn = [cycling(small.usernames[:-1]), cycling(large.usernames[:-1])]
                samplers: list[Callable[[], float]] = [
                    lambda: signin_sample(urls[0], next(drawn[0]), PASSWORD),
                    lambda: signin_sample(urls[1], next(drawn[1]), PASSWORD),
                    lambda: argon2_sample(hasher, stored_hash),
                ]
                progress(f"warming up: {args.warmup} rounds")
                interleave(args.warmup, samplers)
                progress(f"measuring: {args.rounds} rounds")
                samples = interleave(args.rounds, samplers)
                load_after = load_average()
            during = {}
            for place in (small, large):
                wait_for_no_backends(args.admin_url, place.database)
                during[place.accounts] = [
                    now - then for now, then in zip(counters(place), before[place.accounts], strict=True)
                ]
            progress("planning one more sign-in at the large size")
            planned = plans_of_one_signin(large, large.usernames[-1])
            beside = plans_of_one_signin(small, small.usernames[-1])
            sizes = table_sizes(large.url)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        for stale in client.scan_iter(match=f"{prefix}*"):
            client.delete(stale)
        client.close()

    small_s, large_s, argon2_s = (Percentiles.of(s) for s in samples)
    ratio = large_s.p95 / small_s.p95
    print(f"load average after the rounds: {load_after}")
    print(f"  {'ms':28}{'p50':>9}{'p95':>9}{'p99':>9}")
    print(small_s.row(f"sign-in, {args.small:,} accounts"))
    print(large_s.row(f"sign-in, {args.accounts:,} accounts"))
    print(argon2_s.row("argon2id verify alone"))
    for size, (hits, reads, updates, hot) in during.items():
        print(
            f"  {size:,} accounts, over the run: shared-buffer hit ratio {hits / max(1, hits + reads):.4f} "
            f"({reads:,} blocks read from the OS); {updates:,} account updates, {hot:,} of them HOT"
        )
    print(
        f"p50 ratio {large_s.p50 / small_s.p50:.3f}, p99 ratio {large_s.p99 / small_s.p99:.3f}; "
        f"p95({args.accounts:,})/p95({args.small:,}) = {ratio:.3f} (target <= {TARGET_RATIO:.2f})"
    )
    print(f"statements of one sign-in at {args.accounts:,} accounts (EXPLAIN (ANALYZE, BUFFERS, WAL)):")
    big_scans = describe_plans(planned, beside, sizes, args.plans)
    if [item.statement.split()[:3] for item in planned] == [item.statement.split()[:3] for item in beside]:
        large_ms, small_ms = (sum(item.execution_ms for item in plans) for plans in (planned, beside))
        print(
            f"the statements' execution: {large_ms:.3f} ms at {args.accounts:,} accounts, "
            f"{small_ms:.3f} ms at {args.small:,}"
        )
    print(
        "every look-up is an index look-up"
        if big_scans == 0
        else f"{big_scans} sequential scan(s) of a table over {SCAN_WORTH_NAMING:,} rows"
    )
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=1_000_000, help="the large size (default 1,000,000)")
    parser.add_argument("--small", type=int, default=1_000, help="the small size (default 1,000)")
    parser.add_argument("--rounds", type=int, default=400, help="measured rounds (default 400)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured rounds first (default 20)")
    parser.add_argument("--admin-url", default=POSTGRES_ADMIN_URL)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--plans", action="store_true", help="print the plans of one sign-in's statements")
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 when the p95 ratio exceeds {TARGET_RATIO:.2f}"
    )
    args = parser.parse_args(argv)
    if args.rounds < 100 or args.warmup < 1 or args.small < 100 or args.accounts <= args.small:
        parser.error(
            "--rounds must be at least 100, --warmup at least 1, --small at least 100, below --accounts"
        )
    ratio = measure(args)
    if args.check and ratio > TARGET_RATIO:
        print(f"FAIL: ratio {ratio:.3f} exceeds {TARGET_RATIO:.2f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
