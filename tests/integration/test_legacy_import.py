"""``idp accounts import`` on both databases: the report, all or nothing, re-imports, bad files."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import select

from idp.accounts.legacy_import import HEADER, MAX_LINE_BYTES
from idp.accounts.models import Account, AccountStatus, AccountType
from idp.accounts.service import SignInContext
from idp.audit import AuditEvent
from idp.extensions import db
from idp.students.models import GuardianLink, Student
from idp.web.context import services
from tests.integration.helpers import audit_names
from tests.unit.test_legacy_hashes import reference_hash

PASSWORD = "an old portal password"


def legacy_row(username: str, scheme: str = "md5_salt_prefix", **fields: str) -> dict[str, str]:
    """A row of the old portal's table; its hash of ``PASSWORD`` made by ``scheme``'s reference tool."""
    stored, salt = reference_hash(scheme, PASSWORD)
    values = {
        "username": username,
        "email": username if "@" in username else f"{username}@example.org",
        "first_name": "Ana",
        "last_name": "Lopez",
        "account_type": "P",
        "hash_type": scheme,
        "salt": salt,
        "password_hash": stored,
        "password_changed_at": "2024-03-01T08:00:00Z",
        "last_login_at": "2025-05-20 17:45:00",
        "status": "active",
        "expires_at": "",
        "student_ids": "",
    }
    values.update(fields)
    return values


def write_csv(
    path: Path,
    rows: list[dict[str, str]],
    *,
    header: tuple[str, ...] = HEADER,
    newline: str = "\n",
    bom: bool = False,
) -> Path:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(column, "") for column in header])
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode())
    return path


@pytest.fixture
def idp(app: Flask) -> Callable[..., Result]:
    runner = app.test_cli_runner()

    def run(*args: str) -> Result:
        result = runner.invoke(args=list(args))
        db.session.rollback()
        db.session.expire_all()
        return result

    return run


@pytest.fixture
def run_import(idp: Callable[..., Result]) -> Callable[..., tuple[Result, dict[str, Any]]]:
    def run(path: Path, *extra: str) -> tuple[Result, dict[str, Any]]:
        result = idp("accounts", "import", str(path), "--json", *extra)
        assert result.stdout, result.output
        return result, json.loads(result.stdout)

    return run


@pytest.fixture
def students(make_student: Callable[..., Student]) -> list[Student]:
    return [
        make_student(sis_id="100234", first_name="Maya"),
        make_student(sis_id="100235", first_name="Leo"),
        make_student(sis_id="200999", first_name="Sam"),
    ]


def account(username: str) -> Account:
    found = db.session.execute(select(Account).where(Account.username == username)).scalar_one()
    return found


def links(username: str) -> dict[str, str]:
    rows = db.session.execute(
        select(Student.sis_id, GuardianLink.relationship)
        .join(GuardianLink, GuardianLink.student_id == Student.id)
        .where(GuardianLink.account_id == account(username).id)
    ).all()
    return dict(rows)


def snapshot() -> list[tuple[Any, ...]]:
    """Every account and link, column by column: what an import must leave alone."""
    accounts = [
        tuple(getattr(row, column.key) for column in Account.__table__.columns)
        for row in db.session.execute(select(Account).order_by(Account.id)).scalars()
    ]
    guardian_links = [
        (row.account_id, row.student_id, row.relationship, row.status)
        for row in db.session.execute(select(GuardianLink).order_by(GuardianLink.id)).scalars()
    ]
    return [*accounts, *guardian_links]


def counts(created: int, links: int) -> dict[str, int]:
    return {"accounts": created, "links": links}


NOTHING = counts(0, 0)


def good_rows() -> list[dict[str, str]]:
    return [
        legacy_row("ana.lopez", student_ids="100234:mother;100235"),
        legacy_row("sam@example.org", "bcrypt", account_type="S", student_ids="200999"),
        legacy_row(
            "reset.parent", "plaintext", hash_type="-1", password_hash="welcome", password_changed_at=""
        ),
    ]


def test_a_good_file_creates_the_accounts_and_their_links(run_import, students, tmp_path: Path) -> None:
    result, report = run_import(write_csv(tmp_path / "pwa.csv", good_rows()))

    assert result.exit_code == 0, result.output
    assert report == {
        "created": counts(3, 3),
        "updated": NOTHING,
        "unchanged": NOTHING,
        "removed": NOTHING,
        "rejected": [],
    }
    ana = account("ana.lopez")
    assert (ana.type, ana.status, ana.password_scheme) == (
        AccountType.PARENT,
        AccountStatus.CONFIRMED,
        "md5_salt_prefix",
    )
    assert ana.legacy_salt and ana.imported_at is not None and ana.email_verified_at is not None
    assert (
        ana.password_changed_at is not None
        and ana.password_changed_at.isoformat() == "2024-03-01T08:00:00+00:00"
    )
    # The old portal's last sign-in becomes the claims' last_login_at at the first sign-in here.
    assert (
        ana.current_login_at is not None and ana.current_login_at.isoformat() == "2025-05-20T17:45:00+00:00"
    )
    assert links("ana.lopez") == {"100234": "Mother", "100235": "Guardian"}
    assert ana.primary_student_id == students[0].id
    sam = account("sam@example.org")
    assert sam.type is AccountType.STUDENT and sam.password_scheme == "bcrypt" and sam.legacy_salt is None
    assert links("sam@example.org") == {"200999": "Self"}
    reset = account("reset.parent")
    # Never stored as typed: a salted digest until the first sign-in, which must change it.
    assert reset.password_hash != "welcome" and reset.password_scheme == "sha256_salt_prefix"
    assert reset.must_change_password and reset.password_changed_at is None
    names = audit_names()
    assert names.count("account.created") == 3 and names.count("guardian_link.created") == 3
    imported = db.session.execute(
        select(AuditEvent).where(AuditEvent.name == "accounts.imported")
    ).scalar_one()
    assert imported.details["created"] == counts(3, 3) and imported.details["actor"].startswith("cli:")
    assert not any(
        stored in json.dumps(event.details)
        for event in db.session.execute(select(AuditEvent)).scalars()
        for stored in (ana.password_hash, ana.legacy_salt)
    )


def test_importing_the_same_file_again_changes_nothing(run_import, students, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "pwa.csv", good_rows())
    run_import(path)
    before = snapshot()

    result, report = run_import(path)

    assert result.exit_code == 0, result.output
    assert report["created"] == NOTHING and report["updated"] == NOTHING
    assert report["unchanged"] == counts(3, 3)
    assert snapshot() == before


def test_a_changed_row_updates_the_account_until_its_holder_signs_in(
    run_import, students, tmp_path: Path
) -> None:
    run_import(write_csv(tmp_path / "first.csv", [legacy_row("ana.lopez", student_ids="100234")]))
    new_hash, new_salt = reference_hash("sha1_salt_suffix", "a newer old password")
    changed = legacy_row(
        "ana.lopez",
        "sha1_salt_suffix",
        email="ana.new@example.org",
        password_hash=new_hash,
        salt=new_salt,
        student_ids="100234:Father;100235",
    )

    result, report = run_import(write_csv(tmp_path / "second.csv", [changed]))

    assert result.exit_code == 0, result.output
    assert report["updated"] == counts(1, 1) and report["created"] == counts(0, 1)
    ana = account("ana.lopez")
    assert (ana.email, ana.password_scheme, ana.password_hash) == (
        "ana.new@example.org",
        "sha1_salt_suffix",
        new_hash,
    )
    assert links("ana.lopez") == {"100234": "Father", "100235": "Guardian"}
    assert "account.updated" in audit_names()

    # The holder signs in here: the password is theirs now, and so is the profile.
    services().accounts().authenticate("ana.lopez", "a newer old password", SignInContext())
    db.session.commit()
    later = legacy_row("ana.lopez", email="stale@example.org", student_ids="100234:Mother;200999")
    result, report = run_import(write_csv(tmp_path / "third.csv", [later]))

    assert result.exit_code == 0, result.output
    assert report["unchanged"] == counts(1, 1) and report["created"] == counts(0, 1)
    ana = account("ana.lopez")
    assert ana.email == "ana.new@example.org" and ana.password_scheme == "argon2id"
    assert links("ana.lopez") == {"100234": "Father", "100235": "Guardian", "200999": "Guardian"}


BAD_ROWS: list[tuple[dict[str, str], str]] = [
    (legacy_row("ana.lopez"), "username 'ana.lopez' is also on line 2"),
    (legacy_row("аna.lopez"), "looks like the one on line 2"),  # a Cyrillic а
    (
        legacy_row("ben", password_changed_at="2024-13-01"),
        "password_changed_at '2024-13-01' is not an ISO 8601 date",
    ),
    (legacy_row("ben", expires_at="next year"), "expires_at 'next year' is not an ISO 8601 date"),
    (legacy_row("ben", hash_type="md4"), "unknown hash_type 'md4'"),
    (legacy_row("ben", hash_type="0"), "unknown hash_type '0'"),
    (legacy_row("ben", student_ids="100234;999999"), "no student with id '999999'"),
    (legacy_row("ben", student_ids="100234:Uncle"), "unknown relationship 'Uncle'"),
    (legacy_row("ben smith"), "may hold only letters, digits and"),
    (legacy_row("b" * 65), "longer than 64 characters"),
    (legacy_row("ben", account_type="T"), "account_type 'T' is neither P nor S"),
    (legacy_row("ben", status="locked"), "status 'locked' is not active, pending or disabled"),
    (legacy_row("ben", email="not an address"), "email 'not an address' is not an email address"),
    (legacy_row("ben", "bcrypt", password_hash="$2b$04$tooshort"), "not a bcrypt hash"),
    (legacy_row("ben", account_type="S", student_ids="100234;100235"), "links to one student"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_ROWS, ids=[reason[:30] for _, reason in BAD_ROWS])
def test_one_bad_row_rejects_the_whole_file_and_writes_nothing(
    run_import, students, tmp_path: Path, bad: dict[str, str], reason: str
) -> None:
    before, events = snapshot(), audit_names()
    rows = [legacy_row("ana.lopez", student_ids="100234"), bad, legacy_row("carl")]

    result, report = run_import(write_csv(tmp_path / "pwa.csv", rows))

    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: nothing was imported: 1 row(s) rejected"
    assert len(report["rejected"]) == 1, report
    rejected = report["rejected"][0]
    assert rejected["file"].endswith("pwa.csv") and rejected["line"] == 3
    assert reason in rejected["reason"]
    assert report["created"] == counts(2, 1)  # what the file would have done without its bad row
    assert snapshot() == before and audit_names() == events


def test_a_username_of_an_account_made_here_is_not_taken_over(
    run_import, make_account, tmp_path: Path
) -> None:
    make_account(username="ana.lopez", email="ana@example.org")
    before = snapshot()

    result, report = run_import(write_csv(tmp_path / "pwa.csv", [legacy_row("Ana.Lopez")]))

    assert result.exit_code == 1
    assert "belongs to an account made here, not imported" in report["rejected"][0]["reason"]
    assert snapshot() == before


def test_the_dry_run_reports_and_writes_nothing(run_import, students, tmp_path: Path) -> None:
    before, events = snapshot(), audit_names()

    result, report = run_import(write_csv(tmp_path / "pwa.csv", good_rows()), "--dry-run")

    assert result.exit_code == 0, result.output
    assert report["created"] == counts(3, 3) and report["rejected"] == []
    assert "dry run: nothing was written" in result.stderr
    assert snapshot() == before and audit_names() == events


def test_a_bom_crlf_quoted_fields_and_unknown_columns_are_read(run_import, students, tmp_path: Path) -> None:
    header = (*HEADER, "legacy_id")
    rows = [
        legacy_row("ana.lopez", last_name="López, de la Cruz", legacy_id="77"),
        legacy_row("ben", first_name='Ben "Benny"', student_ids="100234:Father"),
    ]

    result, report = run_import(
        write_csv(tmp_path / "pwa.csv", rows, header=header, newline="\r\n", bom=True)
    )

    assert result.exit_code == 0, result.output
    assert report["created"] == counts(2, 1)
    assert account("ana.lopez").last_name == "López, de la Cruz"
    assert account("ben").first_name == 'Ben "Benny"'


def test_numeric_hash_type_codes_name_the_schemes(run_import, tmp_path: Path) -> None:
    rows = [
        legacy_row("ana", "bcrypt", hash_type="7"),
        legacy_row("ben", hash_type="5"),  # md5_salt_prefix, as legacy_row made it
    ]

    result, _ = run_import(write_csv(tmp_path / "pwa.csv", rows))

    assert result.exit_code == 0, result.output
    assert (account("ana").password_scheme, account("ben").password_scheme) == ("bcrypt", "md5_salt_prefix")


def test_text_that_is_not_utf8_is_rejected_with_its_line(run_import, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "pwa.csv", [legacy_row("ana"), legacy_row("ben")])
    path.write_bytes(path.read_bytes().replace(b"Lopez", "López".encode("latin-1")))
    before = snapshot()

    result, report = run_import(path)

    assert result.exit_code == 1
    assert report["rejected"] == [{"file": str(path), "line": 2, "reason": "not UTF-8 text"}]
    assert snapshot() == before


def test_a_missing_required_column_rejects_the_file(run_import, tmp_path: Path) -> None:
    header = tuple(column for column in HEADER if column not in {"password_hash", "hash_type"})

    result, report = run_import(write_csv(tmp_path / "pwa.csv", [legacy_row("ana")], header=header))

    assert result.exit_code == 1
    assert report["rejected"] == [
        {
            "file": str(tmp_path / "pwa.csv"),
            "line": 1,
            "reason": "missing required column(s): hash_type, password_hash",
        }
    ]
    assert report["created"] == NOTHING


def test_an_empty_file_and_a_repeated_column_are_refused(run_import, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    twice = write_csv(tmp_path / "twice.csv", [], header=(*HEADER, "email"))

    assert "the file is empty" in run_import(empty)[1]["rejected"][0]["reason"]
    assert "the header names email more than once" in run_import(twice)[1]["rejected"][0]["reason"]


def test_a_line_over_a_mebibyte_is_refused_without_a_traceback(run_import, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "pwa.csv", [legacy_row("ana", last_name="x" * (MAX_LINE_BYTES + 10))])

    result, report = run_import(path)

    assert result.exit_code == 1 and result.exception is not None and isinstance(result.exception, SystemExit)
    assert report["rejected"][0]["line"] == 2
    assert f"longer than {MAX_LINE_BYTES} bytes" in report["rejected"][0]["reason"]


def test_a_quoted_field_that_never_ends_is_broken_csv(run_import, tmp_path: Path) -> None:
    path = tmp_path / "pwa.csv"
    path.write_text(",".join(HEADER) + '\nana,"' + ("y" * 1000 + "\n") * 200)

    result, report = run_import(path)

    assert result.exit_code == 1
    # csv stops at its field limit or at the end of the file, whichever comes first.
    assert report["rejected"][0]["reason"].startswith("not valid CSV:")


class TwoGigabyteLine(io.RawIOBase):
    """A header, then one line of 2 GiB made as it is read; it counts what was read."""

    def __init__(self) -> None:
        self.header = (",".join(HEADER) + "\n").encode()
        self.remaining = 2 << 30
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.header:
            size = min(len(buffer), len(self.header))
            buffer[:size], self.header = self.header[:size], self.header[size:]
        else:
            size = min(len(buffer), self.remaining)
            buffer[:size] = b"a" * size
            self.remaining -= size
        self.served += size
        return size


def test_a_2_gb_line_is_refused_after_reading_about_one_mebibyte(app: Flask) -> None:
    raw = TwoGigabyteLine()

    report = (
        services()
        .legacy_accounts()
        .import_csv(io.BufferedReader(raw), name="huge.csv", dry_run=False, actor="test")
    )

    assert [(r.line, r.reason) for r in report.rejected] == [
        (2, f"the line is longer than {MAX_LINE_BYTES} bytes")
    ]
    assert raw.served < 2 * MAX_LINE_BYTES


def test_legacy_status_counts_the_accounts_still_on_an_old_hash(
    idp, run_import, students, tmp_path: Path
) -> None:
    run_import(write_csv(tmp_path / "pwa.csv", [*good_rows(), legacy_row("dee", "sha1_salt_suffix")]))
    services().accounts().authenticate("ana.lopez", PASSWORD, SignInContext())
    db.session.commit()

    as_json = idp("accounts", "legacy-status", "--json")
    as_table = idp("accounts", "legacy-status")

    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == {
        "schemes": {"bcrypt": 1, "sha1_salt_suffix": 1, "sha256_salt_prefix": 1},
        "total": 3,
    }
    assert as_table.stdout.split() == [
        "scheme", "accounts", "bcrypt", "1", "sha1_salt_suffix", "1", "sha256_salt_prefix", "1", "total", "3"
    ]  # fmt: skip


def test_the_text_report_lists_each_rejected_row(idp, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "pwa.csv", [legacy_row("ana", hash_type="md4")])

    result = idp("accounts", "import", str(path))

    assert result.exit_code == 1
    assert result.stdout.splitlines()[1].split() == ["created", "0", "0"]
    assert f"{path}:2: unknown hash_type 'md4'" in result.stdout
    assert result.stderr.strip() == "Error: nothing was imported: 1 row(s) rejected"
