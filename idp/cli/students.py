"""``idp students``: students and their schools."""

from __future__ import annotations

import json
from pathlib import Path

import click
from sqlalchemy.exc import IntegrityError

from idp.cli.common import cli_actor, fail, services
from idp.students.credentials import IssuedAccess
from idp.students.guardianship import StudentExists, UnknownStudent
from idp.students.letters import LetterFileRefused, NoStudents
from idp.students.schools import NoSuchSchool


@click.group(help="Students and schools.")
def students() -> None:
    pass


@students.command("create", help="Add a student (an unknown school code is created).")
@click.option("--id", "sis_id", required=True, help="The school system's student id.")
@click.option("--first-name", required=True)
@click.option("--last-name", required=True)
@click.option("--school", required=True, help="School code.")
@click.option("--grade")
@click.option("--access-id", required=True)
@click.option("--access-password", required=True)
def students_create(
    sis_id: str,
    first_name: str,
    last_name: str,
    school: str,
    grade: str | None,
    access_id: str,
    access_password: str,
) -> None:
    for label, value in (("--id", sis_id), ("--access-id", access_id), ("--school", school)):
        if not value.strip() or len(value) > 32:
            fail(f"{label} must be 1 to 32 characters")
    # The column sizes, checked here so that SQLite and PostgreSQL refuse the same input.
    for label, value, limit in (("--first-name", first_name, 100), ("--last-name", last_name, 100)):
        if not value.strip() or len(value.strip()) > limit:
            fail(f"{label} must be 1 to {limit} characters")
    if grade is not None and len(grade) > 16:
        fail("--grade must be at most 16 characters")
    try:
        services().guardianship().create_student(
            sis_id=sis_id.strip(),
            first_name=first_name.strip(),
            last_name=last_name.strip(),
            school_code=school.strip(),
            access_id=access_id.strip(),
            access_password=access_password,
            grade=grade,
        )
        services().session.commit()
    except (StudentExists, IntegrityError) as error:
        fail(str(error.orig) if isinstance(error, IntegrityError) else str(error))
    click.echo(f"created student {sis_id}", err=True)


@students.command(
    "issue-access",
    help="Give students a new Access Password (and an Access ID if they have none); printed once.",
)
@click.option("--school", help="Every active student of this school (by code).")
@click.option("--student", "student_ids", multiple=True, metavar="ID", help="A student's id; may repeat.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout and nothing else.")
def students_issue_access(school: str | None, student_ids: tuple[str, ...], as_json: bool) -> None:
    if (school is None) == (not student_ids):
        fail("give either --school CODE or --student ID (one or more)")
    built = services()
    if school is not None:
        try:
            chosen = built.schools().active_students(school)
        except NoSuchSchool:
            fail(f"no school with code {school!r}")
    else:
        chosen = []
        for sis_id in dict.fromkeys(s.strip() for s in student_ids):
            try:
                chosen.append(built.guardianship().student_by_sis_id(sis_id))
            except UnknownStudent:
                fail(f"no student with id {sis_id!r}")
    issuer = built.access_issuer()
    issued = [issuer.issue(student, actor=cli_actor()) for student in chosen]
    built.session.commit()
    _print_issued(issued, as_json)
    click.echo(f"issued {len(issued)} Access Password(s)", err=True)


@students.command("rotate-access", help="Give one student a new Access Password; the old one stops working.")
@click.argument("student_id")
@click.option("--new-id", is_flag=True, help="Draw a new Access ID as well.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout and nothing else.")
def students_rotate_access(student_id: str, new_id: bool, as_json: bool) -> None:
    built = services()
    try:
        student = built.guardianship().student_by_sis_id(student_id.strip())
    except UnknownStudent:
        fail(f"no student with id {student_id!r}")
    issued = built.access_issuer().issue(student, new_id=new_id, actor=cli_actor())
    built.session.commit()
    _print_issued([issued], as_json)


@students.command(
    "letters",
    help="Write a PDF letter for each active student of a school, with a fresh Access Password.",
)
@click.option("--school", required=True, help="School code.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The PDF to write (mode 0600).",
)
def students_letters(school: str, out: Path) -> None:
    try:
        written = services().family_letters().write(school.strip(), out, actor=cli_actor())
    except NoSuchSchool:
        fail(f"no school with code {school!r}")
    except NoStudents:
        fail(f"school {school!r} has no active students")
    except LetterFileRefused as error:
        fail(str(error))
    click.echo(f"wrote {written.count} letter(s) for school {written.school_code}", err=True)
    click.echo(str(written.path))


def _print_issued(issued: list[IssuedAccess], as_json: bool) -> None:
    """Print credentials to stdout only: they are shown this once, and never logged."""
    rows = [
        {"id": one.sis_id, "access_id": one.access_id, "access_password": one.access_password}
        for one in issued
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(f"{row['id']:20} {row['access_id']:12} {row['access_password']}")
