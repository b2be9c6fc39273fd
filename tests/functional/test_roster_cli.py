"""``idp roster import`` and ``idp roster invite`` through Flask's CLI runner, on both databases:
the report and its JSON, the exit codes, and bad input refused with nothing written."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import func, select

from idp.extensions import db
from idp.mail.models import OutboundEmail
from idp.students.models import School, Student
from idp.students.roster.models import RosterGuardian

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "oneroster"


@pytest.fixture
def idp(app: Flask):
    runner = app.test_cli_runner()

    def run(*args: str) -> Result:
        result = runner.invoke(args=list(args))
        db.session.rollback()
        db.session.expire_all()
        return result

    return run


@pytest.fixture
def roster(tmp_path: Path) -> Path:
    """A writable copy of the bulk fixture set."""
    return Path(shutil.copytree(FIXTURES / "bulk", tmp_path / "roster"))


def rows() -> tuple[int, int, int]:
    counted = tuple(
        int(db.session.execute(select(func.count()).select_from(model)).scalar_one())
        for model in (School, Student, RosterGuardian)
    )
    db.session.commit()
    return counted  # type: ignore[return-value]


def zipped(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, path.name)
    return target


def assert_rejected(result: Result, file: str, reason: str) -> dict[str, object]:
    """Exit 1 without a traceback, the JSON report naming the file and why, one line on stderr."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    report = json.loads(result.stdout)
    assert any(r["file"] == file and reason in r["reason"] for r in report["rejected"]), report["rejected"]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: the roster was rejected") and "nothing was written" in line
    return report


def test_import_prints_exactly_the_json_report(idp, roster: Path):
    result = idp("roster", "import", str(roster), "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "created": {"schools": 2, "students": 3, "guardians": 3, "links": 4},
        "updated": {"schools": 0, "students": 0, "guardians": 0, "links": 0},
        "unchanged": {"schools": 0, "students": 0, "guardians": 0, "links": 0},
        "removed": {"schools": 0, "students": 0, "guardians": 0, "links": 0},
        "rejected": [],
    }
    assert rows() == (2, 3, 3)


def test_import_reads_a_zip_and_prints_a_table_without_json(idp, roster: Path, tmp_path: Path):
    result = idp("roster", "import", str(zipped(roster, tmp_path / "roster.zip")))

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split() == ["created", "2", "3", "3", "4"]
    assert rows() == (2, 3, 3)


def test_a_dry_run_prints_the_report_and_writes_nothing(idp, roster: Path):
    result = idp("roster", "import", str(roster), "--dry-run", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["created"]["students"] == 3
    assert rows() == (0, 0, 0)


def test_a_truncated_zip_is_refused(idp, roster: Path, tmp_path: Path):
    whole = zipped(roster, tmp_path / "whole.zip").read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(whole[: len(whole) * 2 // 3])

    result = idp("roster", "import", str(truncated), "--json")

    assert_rejected(result, "truncated.zip", "not a readable zip file, damaged or truncated")
    assert rows() == (0, 0, 0)


def test_text_that_is_not_utf8_is_refused(idp, roster: Path):
    users = roster / "users.csv"
    users.write_bytes(users.read_bytes().replace(b"June", "Jos\xe9".encode("latin-1")))

    report = assert_rejected(idp("roster", "import", str(roster), "--json"), "users.csv", "not UTF-8 text")

    assert report["rejected"] == [{"file": "users.csv", "line": 7, "reason": "not UTF-8 text"}]
    assert rows() == (0, 0, 0)


def test_a_missing_required_column_is_refused(idp, roster: Path):
    roles = roster / "roles.csv"
    roles.write_text(roles.read_text().replace(",roleType,", ",kind,"))

    assert_rejected(
        idp("roster", "import", str(roster), "--json"), "roles.csv", "missing required column(s): roleType"
    )
    assert rows() == (0, 0, 0)


def test_a_line_of_two_megabytes_is_refused_with_a_clear_message(idp, roster: Path):
    with (roster / "users.csv").open("a") as users:
        users.write("stu-9,,,true,x,,Huge," + "x" * (2 * 1024 * 1024) + "\n")

    assert_rejected(
        idp("roster", "import", str(roster), "--json"), "users.csv", "a line longer than 1,048,576 characters"
    )
    assert rows() == (0, 0, 0)


def test_duplicated_sourced_ids_are_rejected_with_both_lines(idp, roster: Path):
    users = roster / "users.csv"
    users.write_text(users.read_text() + "par-2,,,true,sam2,,Samuel,Rivera,,,,,,stu-1,,,,,,,,org-les,,\n")

    report = assert_rejected(idp("roster", "import", str(roster), "--json"), "users.csv", "is also on line 6")

    assert report["rejected"] == [
        {"file": "users.csv", "line": 9, "reason": "sourcedId 'par-2' is also on line 6"}
    ]
    assert report["created"] == {"schools": 0, "students": 0, "guardians": 0, "links": 0}
    assert rows() == (0, 0, 0)


def test_references_to_nobody_are_rejected(idp, roster: Path):
    roles = roster / "roles.csv"
    roles.write_text(roles.read_text() + "role-9,,,stu-404,primary,student,,,org-les,\n")
    users = roster / "users.csv"
    users.write_text(users.read_text().replace('"stu-1,stu-2"', '"stu-1,stu-404x"'))

    report = assert_rejected(idp("roster", "import", str(roster), "--json"), "roles.csv", "stu-404")

    assert {
        "file": "users.csv",
        "line": 5,
        "reason": ("agentSourcedIds names 'stu-404x', which is in neither users.csv nor the provider"),
    } in report["rejected"]
    assert rows() == (0, 0, 0)


def test_a_missing_path_is_refused(idp, tmp_path: Path):
    assert_rejected(idp("roster", "import", str(tmp_path / "nowhere"), "--json"), "nowhere", "no such folder")


def test_invite_mails_the_guardians_with_an_address(idp, roster: Path):
    assert idp("roster", "import", str(roster)).exit_code == 0

    result = idp("roster", "invite", "--school", "LES", "--json")

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["sent"], document["without_email"]) == (1, 1)
    assert document["invitations"] == [
        {"guardian": "par-1", "email": "dana@example.org", "students": ["100234"]}
    ]
    mail = db.session.execute(
        select(OutboundEmail).where(OutboundEmail.purpose == "guardian_invitation")
    ).scalar_one()
    assert mail.to_address == "dana@example.org" and "http://localhost/invitations/gi_" in mail.body_text
    assert "Zoe" in mail.body_text and "Lincoln Elementary School" in mail.body_text
    db.session.commit()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give either --school CODE or --student ID"),
        (("--school", "LES", "--student", "100234"), "give either --school CODE or --student ID"),
        (("--school", "NOPE"), "no such school: NOPE"),
        (("--student", "100234", "--student", "999"), "no such student: 999"),
    ],
)
def test_invite_refuses_what_names_nobody(idp, roster: Path, args: tuple[str, ...], message: str):
    assert idp("roster", "import", str(roster)).exit_code == 0

    result = idp("roster", "invite", *args)

    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert message in result.stderr and result.stdout == ""
