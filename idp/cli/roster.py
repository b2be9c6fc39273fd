"""``idp roster``: import a OneRoster 1.2 CSV set, and invite its guardians."""

from __future__ import annotations

import json
from pathlib import Path

import click

from idp.cli.common import cli_actor, fail, services
from idp.students.invitations import UnknownSchool, UnknownStudents
from idp.students.roster.importer import RosterImportFailed
from idp.students.roster.reader import RosterFileError, open_source
from idp.students.roster.report import ImportReport


@click.group(help="OneRoster rosters: import schools, students and guardians; invite the guardians.")
def roster() -> None:
    pass


@roster.command(
    "import",
    help="Import a OneRoster 1.2 CSV set (a folder or a zip): all of it, or nothing if a row is rejected.",
)
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check and report what would change; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def roster_import(path: Path, dry_run: bool, as_json: bool) -> None:
    try:
        source = open_source(path)
    except RosterFileError as error:
        report = ImportReport(dry_run=dry_run)
        report.reject(error.file, error.line, error.reason)
    else:
        try:
            report = services().roster_import().run(source, actor=cli_actor(), dry_run=dry_run)
        except RosterImportFailed as failed:
            fail(f"{failed}; nothing was written")
        finally:
            source.close()
    click.echo(json.dumps(report.as_json()) if as_json else report.as_text())
    if report.is_rejected:
        rows = len(report.rejected) + report.more_rejected
        click.echo(f"Error: the roster was rejected ({rows} row(s)); nothing was written", err=True)
        raise SystemExit(1)


@roster.command(
    "invite", help="Mail each roster guardian with an email address a link that links their students."
)
@click.option("--school", "school_code", metavar="CODE", help="Every student of this school.")
@click.option("--student", "student_ids", multiple=True, metavar="ID", help="A student's id (repeat).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def roster_invite(school_code: str | None, student_ids: tuple[str, ...], as_json: bool) -> None:
    if (school_code is None) == (not student_ids):
        fail("give either --school CODE or --student ID (one or more), not both")
    try:
        invited = (
            services()
            .guardian_invitations()
            .invite(school_code=school_code, student_ids=student_ids, actor=cli_actor())
        )
    except (UnknownSchool, UnknownStudents) as unknown:
        fail(str(unknown) if isinstance(unknown, UnknownStudents) else f"no such school: {school_code}")
    if as_json:
        document = {
            "sent": len(invited.sent),
            "without_email": invited.without_email,
            "invitations": [
                {
                    "guardian": sent.guardian_sourced_id,
                    "email": sent.email,
                    "students": list(sent.student_ids),
                }
                for sent in invited.sent
            ],
        }
        click.echo(json.dumps(document))
        return
    for sent in invited.sent:
        click.echo(f"{sent.guardian_sourced_id}\t{sent.email}\t{', '.join(sent.student_ids)}")
    click.echo(
        f"invited {len(invited.sent)} guardian(s); {invited.without_email} without an email address "
        "(idp worker sends the mail)",
        err=True,
    )
