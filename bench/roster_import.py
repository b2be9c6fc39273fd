"""The OneRoster import on PostgreSQL: rows per second and peak memory, at two sizes.

The issue's case: 100,000 students with 150,000 guardians, in a memory that stays flat whatever
the size. Run from the repository root (PostgreSQL as the tests use it, ``IDP_TEST_POSTGRES_ADMIN``
or ``--admin-url``)::

    .venv/bin/python -m bench.roster_import [--sizes 10000,100000] [--again]

For each size, in a fresh Python process of its own (so that its peak resident memory is its own),
it writes a OneRoster 1.2 CSV set into a temporary folder (a school per 500 students; each student
with one guardian, every other one with a second: 1.5 guardians per student; a language for one
student in five; a student's row naming its guardians and each guardian's row naming its
students), creates a throw-away database (``idp_bench_roster``, dropped afterwards), migrates it,
and times ``RosterImport.run`` as ``idp roster import`` calls it: the checking pass and the writing
pass, one transaction. It prints the rows read per second (every data row of every file), the
students per second, and the process's peak RSS (``resource.getrusage``'s ``ru_maxrss``) with
the RSS before the import, so that the import's own share shows. ``--again`` imports the same
files a second time (everything unchanged) and times that too. The exit code is 0: a
measurement, not a test.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from flask_migrate import upgrade

from idp import create_app
from idp.config import Settings
from idp.extensions import db
from idp.students.roster.reader import FolderSource
from idp.web.context import SERVICES_KEY

DATABASE = "idp_bench_roster"
STUDENTS_PER_SCHOOL = 500
# users.csv's columns in the binding's order, and the language extension the import reads.
USERS_HEADER = (  # noqa: SIM905 (the header as it reads in a file)
    "sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,"
    "identifier,email,sms,phone,agentSourcedIds,grades,password,userMasterIdentifier,resourceSourcedIds,"
    "preferredGivenName,preferredMiddleName,preferredFamilyName,primaryOrgSourcedId,pronouns,metadata.language"
).split(",")
FIRST_NAMES = ("Ada", "Ben", "Chen", "Dana", "Eli", "Fatima", "Grace", "Hugo", "Ines", "Jonas", "Kai", "Lena")
LAST_NAMES = ("Adams", "Brown", "Chen", "Diaz", "Evans", "Garcia", "Khan", "Lee", "Nguyen", "Patel", "Rivera")
LANGUAGES = ("es", "vi", "zh-Hans", "ar", "pt-BR")


def write_roster(folder: Path, n: int) -> int:
    """Write the set for ``n`` students; return the number of data rows written."""
    schools = max(2, n // STUDENTS_PER_SCHOOL)
    second = {i: n + i // 2 for i in range(0, n, 2)}  # every other student has a second guardian
    guardians = n + len(second)
    rows = 0
    with (folder / "manifest.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["propertyName", "value"])
        writer.writerows(
            [
                ["manifest.version", "1.0"],
                ["oneroster.version", "1.2"],
                ["file.orgs", "bulk"],
                ["file.users", "bulk"],
                ["file.roles", "bulk"],
                ["file.demographics", "bulk"],
                ["file.classes", "absent"],
                ["file.enrollments", "absent"],
            ]
        )
    with (folder / "orgs.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            ["sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parentSourcedId"]
        )
        writer.writerow(["org-district", "", "", "Bench District", "district", "BD", ""])
        for s in range(schools):
            writer.writerow([f"org-{s}", "", "", f"Bench School {s}", "school", f"S{s:03d}", "org-district"])
            rows += 1
    with (
        (folder / "users.csv").open("w", newline="") as out,
        (folder / "roles.csv").open("w", newline="") as roles_out,
    ):
        writer, roles = csv.writer(out), csv.writer(roles_out)
        writer.writerow(USERS_HEADER)
        roles.writerow(
            [
                "sourcedId",
                "status",
                "dateLastModified",
                "userSourcedId",
                "roleType",
                "role",
                "beginDate",
                "endDate",
                "orgSourcedId",
                "userProfileSourcedId",
            ]
        )
        blank = [""] * len(USERS_HEADER)
        for i in range(n):
            family = [f"par-{i}"] + ([f"par-{second[i]}"] if i in second else [])
            row = dict(zip(USERS_HEADER, blank, strict=True)) | {
                "sourcedId": f"stu-{i}",
                "enabledUser": "true",
                "givenName": FIRST_NAMES[i % len(FIRST_NAMES)],
                "familyName": LAST_NAMES[i % len(LAST_NAMES)],
                "identifier": f"{1_000_000 + i}",
                "agentSourcedIds": ",".join(family),
                "grades": f"{1 + i % 12:02d}",
            }
            writer.writerow(row.values())
            roles.writerow(
                [f"role-stu-{i}", "", "", f"stu-{i}", "primary", "student", "", "", f"org-{i % schools}", ""]
            )
            rows += 2
        children: dict[int, list[int]] = {g: [g] for g in range(n)}
        for i, g in second.items():
            children[g] = [i]
        for g in range(guardians):
            row = dict(zip(USERS_HEADER, blank, strict=True)) | {
                "sourcedId": f"par-{g}",
                "enabledUser": "true",
                "givenName": FIRST_NAMES[(g + 3) % len(FIRST_NAMES)],
                "familyName": LAST_NAMES[g % len(LAST_NAMES)],
                "email": f"guardian{g}@example.org" if g % 5 else "",
                "agentSourcedIds": ",".join(f"stu-{i}" for i in children[g]),
                "metadata.language": LANGUAGES[g % len(LANGUAGES)] if g % 5 == 0 else "",
            }
            writer.writerow(row.values())
            role = ("parent", "guardian", "relative")[g % 3]
            roles.writerow(
                [f"role-par-{g}", "", "", f"par-{g}", "primary", role, "", "", f"org-{g % schools}", ""]
            )
            rows += 2
    with (folder / "demographics.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["sourcedId", "status", "dateLastModified", "birthDate", "sex", "metadata.language"])
        for i in range(0, n, 5):
            writer.writerow([f"stu-{i}", "", "", "2012-09-01", "female", LANGUAGES[i % len(LANGUAGES)]])
            rows += 1
    return rows


@contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}"')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{DATABASE}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (DATABASE,)
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}"')


def peak_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_one(n: int, admin_url: str, again: bool) -> None:
    """Import ``n`` students in this process and print one line of figures."""
    with tempfile.TemporaryDirectory(prefix="idp-bench-roster-") as tmp, throwaway_database(admin_url) as url:
        folder = Path(tmp) / "roster"
        folder.mkdir()
        began = time.perf_counter()
        rows = write_roster(folder, n)
        written = time.perf_counter() - began
        size = sum(path.stat().st_size for path in folder.iterdir()) / 1024 / 1024
        settings = Settings(
            env="development",
            issuer="http://localhost",
            database_url=url,
            redis_url="memory://",
            secret_key="bench-secret-key-0123456789abcdef0123456789abcdef",
            keys_dir=Path(tmp) / "keys",
            smtp_url=f"file://{Path(tmp) / 'outbox'}",
        )
        app = create_app(settings)
        try:
            with app.app_context():
                upgrade()
                services = app.extensions[SERVICES_KEY]
                before = peak_rss_mib()
                started = time.perf_counter()
                report = services.roster_import().run(FolderSource(folder), actor="bench")
                took = time.perf_counter() - started
                assert not report.is_rejected, report.rejected[:5]
                created = report.counts["created"]
                print(
                    f"{n:>9,} students, {created['guardians']:,} guardians, {created['links']:,} links; "
                    f"{rows:,} rows ({size:.0f} MiB of CSV, written in {written:.1f} s)\n"
                    f"  import: {took:.1f} s, {rows / took:,.0f} rows/s, {n / took:,.0f} students/s; "
                    f"peak RSS {peak_rss_mib():.0f} MiB (before the import: {before:.0f} MiB)"
                )
                if again:
                    started = time.perf_counter()
                    report = services.roster_import().run(FolderSource(folder), actor="bench")
                    took = time.perf_counter() - started
                    unchanged = report.counts["unchanged"]["students"]
                    print(
                        f"  again (unchanged: {unchanged:,} students): {took:.1f} s, "
                        f"{rows / took:,.0f} rows/s; peak RSS {peak_rss_mib():.0f} MiB"
                    )
                db.session.remove()
        finally:
            with app.app_context():
                db.engine.dispose()
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated student counts")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("IDP_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--again", action="store_true", help="import the same files twice")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process: one size
    args = parser.parse_args(argv)
    if args.one is not None:
        measure_one(args.one, args.admin_url, args.again)
        return 0
    print(
        f"machine: {len(os.sched_getaffinity(0))} CPUs, Python {platform.python_version()}; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    with psycopg.connect(args.admin_url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    print(f"PostgreSQL {version[0] if version else '?'}")
    for size in (int(part) for part in args.sizes.split(",")):
        command = [
            sys.executable,
            "-m",
            "bench.roster_import",
            "--one",
            str(size),
            "--admin-url",
            args.admin_url,
        ]
        subprocess.run([*command, *(["--again"] if args.again else [])], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
