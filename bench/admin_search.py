"""The console's account search on PostgreSQL at 1,000 and 1,000,000 accounts: p50 and p95 per search.

The issue's target: a search over a million accounts answers in under 50 ms at p95.

Run from the repository root (PostgreSQL as the tests use it, ``IDP_TEST_POSTGRES_ADMIN`` or
``--admin-url``; Redis on 127.0.0.1:6379 or ``--redis-url``)::

    .venv/bin/python -m bench.admin_search [--sizes 1000,1000000] [--repeat 200] [--explain]

For each size it creates a throw-away database (``idp_bench_search``, dropped afterwards),
migrates it with the project's migrations up to the revision before the search's indexes, loads
generated schools, students, accounts (parents and students; surnames with a long tail: 30% of
people share 100 common ones; 3% pending, 1.5% disabled, 1%
expired, 0.5% test accounts, 70% with a sign-in), guardian links (1 to 3 students per parent) and
old lock events with ``COPY``, then applies the last migration (the indexes are built on the full
tables, as on an upgraded district) and ANALYZEs. 25 accounts are locked through the counters
(Redis, under a key prefix of its own, deleted afterwards) with their ``account.locked`` events.

It then times ``AccountSearch.search`` in-process (the service call a page or the API makes:
the lock candidates, the search, the linked students), the kinds of search interleaved round
after round with values drawn from the data, and prints each kind's p50 and p95. The exit code is
0 (a measurement, not a test) unless ``--check`` is given and a p95 exceeds the target.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import redis
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import event, text

from idp import create_app
from idp.admin.actor import Actor
from idp.admin.models import StaffRole
from idp.admin.search import AccountSearch, SearchPage, encode_cursor
from idp.config import Settings
from idp.counters.store import Threshold
from idp.extensions import db
from idp.web.context import SERVICES_KEY

TARGET_P95_MS = 50.0
DATABASE = "idp_bench_search"
BEFORE_SEARCH = "0010_staff_console"
LOCKED_ACCOUNTS = 25

FIRST_NAMES = (  # noqa: SIM905 (a paragraph of names reads better than a column)
    "Ada Alan Alice Amir Ana Andre Anna Aria Ben Bianca Carlos Chen Chloe Dana Daniel David Diego Elena Eli "
    "Emma Eric Eva Farah Felix Fatima Grace Hana Hugo Ian Ines Isaac Ivy Jack Jade James Jin Jonas Jose "
    "Julia Kai Kara Kenji Laila Leo Lena Liam Lucas Lucia Luis Maya Mei Mia Mila Nadia Noah Nora Omar "
    "Oscar Paula Pedro Priya Rafael Rosa Ruth Sam Sara Sofia Tariq Theo Tom Uma Victor Wen Yara Yusuf Zoe"
).split()
LAST_NAMES = (  # noqa: SIM905
    "Adams Ahmed Alvarez Anderson Bailey Baker Brown Campbell Carter Castillo Chavez Chen Clark Collins "
    "Cook Cooper Cruz Davis Diaz Edwards Evans Flores Garcia Gomez Gonzalez Gray Green Gupta Hall Harris "
    "Hernandez Hill Hopper Howard Hughes Jackson James Jimenez Johnson Jones Kelly Khan Kim King Lee Lewis "
    "Li Lopez Lovelace Martin Martinez Miller Mitchell Moore Morales Morgan Murphy Nelson Ng Nguyen Ortiz "
    "Parker Patel Perez Peterson Phillips Ramirez Reed Reyes Rivera Roberts Robinson Rodriguez Rogers Ross "
    "Ruiz Sanchez Scott Shah Singh Smith Stewart Taylor Thomas Thompson Torres Turner Walker Ward Watson "
    "White Williams Wilson Wood Wright Wu Young"
).split()
# Surnames have a long tail: 30% of people carry one of the 100 common ones above (0.3% each),
# the others one of 18,750 rarer ones (about 37 people each in a million).
RARE_PARTS = (
    "Al Ber Cor Dal Ek Fen Gar Hol Is Jor Kal Lin Mor Nor Os Pel Quin Ros Sel Tor Ul Ven Wes Yor Zan Bran "
    "Cas Dun Eld Fal",
    "a e i o u ar en il on ur an er in or us as es is os ys at et it ot ut",
    "berg son man ford wick ton ley well worth field stein dale more land holt by gate ridge wood "
    "brook ham sted mark vik strom",
)
RARE_LAST_NAMES = [
    a + b + c for a in RARE_PARTS[0].split() for b in RARE_PARTS[1].split() for c in RARE_PARTS[2].split()
]
DOMAINS = ("example.org", "mail.example", "school.example", "home.example", "post.example")


@dataclass(frozen=True)
class Sample:
    email: str
    first_name: str
    last_name: str
    account_id: str


@dataclass(frozen=True)
class Data:
    accounts: list[Sample]
    sis_ids: list[str]
    school_ids: list[str]


def last_name(rng: random.Random) -> str:
    return rng.choice(LAST_NAMES) if rng.random() < 0.3 else rng.choice(RARE_LAST_NAMES)


def new_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def generate(conn: psycopg.Connection[Any], n: int, rng: random.Random, now: datetime) -> Data:
    """Load ``n`` accounts with their students, schools and links with COPY; return samples of them."""
    school_count = 40 if n >= 100_000 else 4
    school_ids = [new_id(rng) for _ in range(school_count)]
    student_count = max(1, int(n * 0.8))
    students: list[tuple[str, str, str]] = []  # id, sis id, last name
    with conn.cursor() as cur:
        # The rows are made consistent here: no foreign-key trigger need check 3 million of them
        # one at a time (a superuser's setting, as the test database's user is).
        cur.execute("SET session_replication_role = replica")
        with cur.copy("COPY school (id, code, name, created_at) FROM STDIN") as copy:
            for i, school_id in enumerate(school_ids):
                copy.write_row((school_id, f"SCH{i:02d}", f"School {i}", now))
        with cur.copy(
            "COPY student (id, sis_id, first_name, last_name, school_id, grade, access_id,"
            " access_password_hash, active, created_at) FROM STDIN"
        ) as copy:
            for i in range(student_count):
                student_id, sis_id, last = new_id(rng), f"{1_000_000 + i}", last_name(rng)
                students.append((student_id, sis_id, last))
                copy.write_row(
                    (
                        student_id,
                        sis_id,
                        rng.choice(FIRST_NAMES),
                        last,
                        school_ids[i % school_count],
                        str(1 + i % 12),
                        f"AID{i:08d}",
                        "x",
                        True,
                        now,
                    )
                )
        samples: list[Sample] = []
        links: list[tuple[str, str, str]] = []
        with cur.copy(
            "COPY account (id, type, username, username_key, username_skeleton, email, first_name,"
            " last_name, password_hash, password_scheme, password_changed_at, must_change_password,"
            " status, primary_student_id, login_count, current_login_at, current_login_ip, created_at,"
            " expires_at, is_test_account) FROM STDIN"
        ) as copy:
            for i in range(n):
                account_id = new_id(rng)
                is_student = i % 7 == 0 and i // 7 < student_count
                if is_student:
                    own = students[i // 7]
                    children = [own]
                    last = own[2]
                else:
                    children = [rng.choice(students) for _ in range(rng.choice((1, 1, 1, 2, 2, 3)))]
                    last = children[0][2] if rng.random() < 0.8 else last_name(rng)
                first = rng.choice(FIRST_NAMES)
                username = f"{first}{last}{i}".lower()
                email = f"{first}.{last}{i}@{rng.choice(DOMAINS)}".lower()
                mix = (i * 7919) % 200
                status = "pending" if mix < 6 else "disabled" if mix < 9 else "confirmed"
                expires = now - timedelta(days=3) if 9 <= mix < 11 else None
                signed_in = rng.random() < 0.7
                copy.write_row(
                    (
                        account_id,
                        "student" if is_student else "parent",
                        username,
                        username,
                        username,
                        email,
                        first,
                        last,
                        "x",
                        "argon2id",
                        now,
                        False,
                        status,
                        children[0][0],
                        1 if signed_in else 0,
                        now - timedelta(minutes=rng.randrange(1, 200_000)) if signed_in else None,
                        f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                        if signed_in
                        else None,
                        now - timedelta(days=rng.randrange(1, 1500)),
                        expires,
                        mix == 11,
                    )
                )
                for child in dict.fromkeys(children):
                    links.append((account_id, child[0], "Self" if is_student else "Guardian"))
                if rng.random() < 2000 / n or len(samples) < 50:
                    samples.append(Sample(email, first, last, account_id))
        with cur.copy(
            "COPY guardian_link (id, account_id, student_id, relationship, status, created_at) FROM STDIN"
        ) as copy:
            for account_id, student_id, relationship in links:
                copy.write_row((new_id(rng), account_id, student_id, relationship, "active", now))
        # Lock events of the past weeks: the trail the lock candidates' index must skip.
        with cur.copy("COPY audit_event (id, name, occurred_at, account_id, details) FROM STDIN") as copy:
            for _ in range(max(1, n // 20)):
                sample = rng.choice(samples)
                at = now - timedelta(days=2, minutes=rng.randrange(40_000))
                copy.write_row((new_id(rng), "account.locked", at, sample.account_id, '{"seconds": 300}'))
    conn.commit()
    return Data(samples, [sis for _, sis, _ in rng.sample(students, min(2000, len(students)))], school_ids)


def lock_some(app: Flask, data: Data, rng: random.Random, now: datetime) -> None:
    """Lock accounts through the counters, each with the audit event a sign-in would write."""
    services = app.extensions[SERVICES_KEY]
    chosen = rng.sample(data.accounts, min(LOCKED_ACCOUNTS, len(data.accounts)))
    with app.app_context():
        lockout = services.lockout
        usernames: dict[str, str] = dict(
            db.session.execute(
                text("SELECT id, username FROM account WHERE id = ANY(:ids)"),
                {"ids": [s.account_id for s in chosen]},
            ).all()
        )
        for sample in chosen:
            key = lockout.user_key(usernames[sample.account_id])
            lockout.counters.attempt(
                key, Threshold(limit=1, window=timedelta(minutes=15), lock=timedelta(hours=1))
            )
            db.session.execute(
                text(
                    "INSERT INTO audit_event (id, name, occurred_at, account_id, details)"
                    " VALUES (:id, 'account.locked', :at, :account, '{\"seconds\": 3600}')"
                ),
                {"id": secrets.token_hex(16), "at": now, "account": sample.account_id},
            )
        db.session.commit()


Kind = Callable[[AccountSearch, random.Random], SearchPage]


def kinds(data: Data) -> dict[str, Kind]:
    district = Actor.staff("bench-district", StaffRole.DISTRICT_ADMIN)
    school = Actor.staff("bench-school", StaffRole.SCHOOL_ADMIN, frozenset({data.school_ids[0]}))
    pick = random.Random.choice

    def key_of(s: Sample) -> str:
        return encode_cursor((s.last_name, s.first_name, s.account_id))

    return {
        "exact email": lambda s, r: s.search(district, q=pick(r, data.accounts).email),
        "partial email (local part)": lambda s, r: s.search(
            district, q=pick(r, data.accounts).email.split("@")[0][:-1]
        ),
        "partial name (first + 4 letters)": lambda s, r: s.search(
            district, q=f"{(a := pick(r, data.accounts)).first_name} {a.last_name[:4]}"
        ),
        "last name (drawn from the accounts)": lambda s, r: s.search(
            district, q=pick(r, data.accounts).last_name
        ),
        "a common last name (0.3%)": lambda s, r: s.search(district, q=pick(r, LAST_NAMES)),
        "two-letter last name (whole)": lambda s, r: s.search(district, q=pick(r, ("Li", "Ng", "Wu"))),
        "student ID": lambda s, r: s.search(district, q=pick(r, data.sis_ids)),
        "partial student ID": lambda s, r: s.search(district, q=pick(r, data.sis_ids)[:-2]),
        "Show All, first page": lambda s, r: s.search(district),
        "Show All, a deep page (cursor)": lambda s, r: s.search(
            district, cursor=key_of(pick(r, data.accounts))
        ),
        "type = student": lambda s, r: s.search(district, account_type="student"),
        "status = disabled": lambda s, r: s.search(district, status="disabled"),
        "status = pending": lambda s, r: s.search(district, status="pending"),
        "status = locked": lambda s, r: s.search(district, status="locked"),
        "status = test": lambda s, r: s.search(district, status="test"),
        "status = active + last name": lambda s, r: s.search(
            district, status="active", q=pick(r, data.accounts).last_name
        ),
        "school admin: Show All": lambda s, r: s.search(school),
        "school admin: last name": lambda s, r: s.search(school, q=pick(r, data.accounts).last_name),
    }


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


@contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}"')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
        # The indexes are built on full tables: give the build the memory a DBA would.
        conn.execute(f"ALTER DATABASE \"{DATABASE}\" SET maintenance_work_mem = '512MB'")
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{DATABASE}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (DATABASE,)
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}"')


def explain(app: Flask, search: AccountSearch, run: Kind, rng: random.Random) -> str:
    """The plan of the main statement of one search of this kind, as it ran (EXPLAIN ANALYZE)."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        run(search, rng)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    db.session.rollback()
    statement, parameters = next(
        (s, p) for s, p in seen if "ORDER BY account.last_name" in s and "LIMIT" in s
    )
    rows = db.session.connection().exec_driver_sql(f"EXPLAIN (ANALYZE, COSTS OFF) {statement}", parameters)
    plan = "\n".join(f"      {row[0]}" for row in rows)
    db.session.rollback()
    return plan


def measure(n: int, repeat: int, admin_url: str, redis_url: str, show_plans: bool) -> dict[str, float]:
    rng = random.Random(n)  # noqa: S311 (generated names, not secrets)
    now = datetime.now(UTC)
    prefix = f"idp-bench-search:{secrets.token_hex(6)}:"
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    with throwaway_database(admin_url) as url, tempfile.TemporaryDirectory(prefix="idp-bench-search-") as tmp:
        settings = Settings(
            env="development",
            issuer="http://localhost",
            database_url=url.replace("postgresql://", "postgresql+psycopg://", 1),
            redis_url=redis_url,
            redis_key_prefix=prefix,
            secret_key="bench-secret-key-0123456789abcdef0123456789abcdef",
            keys_dir=Path(tmp) / "keys",
        )
        app = create_app(settings)
        try:
            started = time.perf_counter()
            with app.app_context():
                upgrade(revision=BEFORE_SEARCH)
            with psycopg.connect(url) as conn:
                data = generate(conn, n, rng, now)
            loaded = time.perf_counter()
            with app.app_context():
                upgrade()
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
            indexed = time.perf_counter()
            lock_some(app, data, rng, now)
            print(
                f"\n{n:,} accounts: loaded in {loaded - started:.0f} s, indexed and analyzed in "
                f"{indexed - loaded:.0f} s; {repeat} searches of each kind, interleaved"
            )
            results: dict[str, list[float]] = {}
            rows: dict[str, list[int]] = {}
            with app.app_context():
                search = app.extensions[SERVICES_KEY].account_search()
                runs = kinds(data)
                for _ in range(3):  # warm the caches and the pool
                    for run in runs.values():
                        run(search, rng)
                        db.session.rollback()
                for _ in range(repeat):
                    for name, run in runs.items():
                        began = time.perf_counter()
                        page = run(search, rng)
                        db.session.rollback()  # as a request ends
                        results.setdefault(name, []).append((time.perf_counter() - began) * 1000)
                        rows.setdefault(name, []).append(len(page.rows))
                print(f"  {'search':36}{'p50':>9}{'p95':>9}{'rows':>7}")
                for name, samples in results.items():
                    print(
                        f"  {name:36}{statistics.median(samples):>7.2f}ms{percentile(samples, 95):>7.2f}ms"
                        f"{statistics.mean(rows[name]):>7.1f}"
                    )
                if show_plans:
                    for name, run in runs.items():
                        print(f"  plan of {name}:\n{explain(app, search, run, rng)}")
                db.session.remove()
            return {name: percentile(samples, 95) for name, samples in results.items()}
        finally:
            with app.app_context():
                db.engine.dispose()
            for stale in client.scan_iter(match=f"{prefix}*"):
                client.delete(stale)
            client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,1000000", help="comma-separated account counts")
    parser.add_argument("--repeat", type=int, default=200, help="searches of each kind per size")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("IDP_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--explain", action="store_true", help="print each kind's plan (EXPLAIN ANALYZE)")
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 if a p95 exceeds {TARGET_P95_MS:.0f} ms"
    )
    args = parser.parse_args(argv)
    cpus = len(os.sched_getaffinity(0))
    print(
        f"machine: {cpus} CPUs, Python {platform.python_version()}; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    with psycopg.connect(args.admin_url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    print(f"PostgreSQL {version[0] if version else '?'}, Redis at {args.redis_url}")
    worst = 0.0
    for size in (int(part) for part in args.sizes.split(",")):
        p95 = measure(size, args.repeat, args.admin_url, args.redis_url, args.explain)
        worst = max(worst, *p95.values())
        print(f"  slowest p95: {max(p95.values()):.2f} ms ({max(p95, key=p95.__getitem__)})")
    return 1 if args.check and worst > TARGET_P95_MS else 0


if __name__ == "__main__":
    sys.exit(main())
