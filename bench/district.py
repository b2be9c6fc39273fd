"""A generated district at scale, loaded into a throw-away PostgreSQL database with ``COPY``.

Shared by the benchmarks that need a district of a million accounts (``bench.admin_search``,
``bench.signin_million``): 40 schools, 0.8 students per account, accounts (1 in 7 a student
account linked to itself, the others parents of 1 to 3 students: about 1.57 guardian links per
account), surnames with a long tail (30% of people share 100 common ones), 3% pending, 1.5%
disabled, 1% expired, 0.5% test accounts, 70% with a sign-in, and old lock events.

The rows are written at ``GENERATED_REVISION``; ``build`` then applies the later migrations, so
their indexes are built on the full tables as on an upgraded district, and ANALYZEs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from flask import Flask
from flask_migrate import upgrade

# The schema ``generate`` writes: the revision before the search's indexes (0011).
GENERATED_REVISION = "0010_staff_console"
# A stored hash no password matches (the search never signs anyone in).
NO_PASSWORD = "x"

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


def generate(
    conn: psycopg.Connection[Any],
    n: int,
    rng: random.Random,
    now: datetime,
    *,
    password_hash: str = NO_PASSWORD,
    progress: Callable[[str], None] | None = None,
) -> Data:
    """Load ``n`` accounts with their students, schools and links with COPY; return samples of them.

    Every account gets ``password_hash`` (one argon2 hash for all: a million of them would take
    hours to make); ``progress`` hears of every 100,000 accounts written.
    """
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
                if progress is not None and i and i % 100_000 == 0:
                    progress(f"{i:,} of {n:,} accounts written")
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
                        password_hash,
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


@dataclass(frozen=True)
class Built:
    data: Data
    load_seconds: float
    index_seconds: float


def build(
    app: Flask,
    url: str,
    n: int,
    rng: random.Random,
    now: datetime,
    *,
    password_hash: str = NO_PASSWORD,
    progress: Callable[[str], None] | None = None,
) -> Built:
    """Migrate ``app``'s empty database to ``GENERATED_REVISION``, load ``n`` accounts, apply the
    later migrations and VACUUM ANALYZE; ``url`` is the same database for psycopg."""
    started = time.perf_counter()
    with app.app_context():
        upgrade(revision=GENERATED_REVISION)
    with psycopg.connect(url) as conn:
        data = generate(conn, n, rng, now, password_hash=password_hash, progress=progress)
    loaded = time.perf_counter()
    if progress is not None:
        progress(f"{n:,} accounts loaded in {loaded - started:.0f} s; migrating to the head and analyzing")
    with app.app_context():
        upgrade()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return Built(data, loaded - started, time.perf_counter() - loaded)


@contextmanager
def throwaway_database(admin_url: str, name: str) -> Iterator[str]:
    """Create the database ``name`` (dropped first if a run left it), yield its URL, drop it."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
        # The indexes are built on full tables: give the build the memory a DBA would.
        conn.execute(f"ALTER DATABASE \"{name}\" SET maintenance_work_mem = '512MB'")
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
