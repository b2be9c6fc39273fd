"""``idp students``: students and their schools."""

from __future__ import annotations

import click
from sqlalchemy.exc import IntegrityError

from idp.cli.common import fail, services
from idp.students.guardianship import StudentExists


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
