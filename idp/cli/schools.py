"""``idp schools``: the schools, by code, with the names people read."""

from __future__ import annotations

import json
from typing import Any

import click

from idp.cli.common import cli_actor, fail, services
from idp.students.models import School
from idp.students.schools import NoSuchSchool, SchoolRefused


@click.group(help="Schools: codes, names, time zones and addresses.")
def schools() -> None:
    pass


@schools.command("create", help="Add a school.")
@click.option("--code", required=True, help="The code portals know it by (the claims' school_id).")
@click.option("--name", required=True, help="The name people read.")
@click.option("--timezone", help="An IANA time zone such as America/Chicago (default: IDP_TIMEZONE).")
@click.option("--address", help="Postal address, free text.")
@click.option("--json", "as_json", is_flag=True, help="Print the school as JSON on stdout.")
def schools_create(code: str, name: str, timezone: str | None, address: str | None, as_json: bool) -> None:
    built = services()
    try:
        school = built.schools().create(
            code=code, name=name, timezone=timezone, address=address, actor=cli_actor()
        )
    except SchoolRefused as error:
        fail(str(error))
    built.session.commit()
    if as_json:
        click.echo(json.dumps(_summary(school)))
    else:
        click.echo(f"created school {school.code}", err=True)


@schools.command("update", help="Change a school's name, time zone or address (empty clears the last two).")
@click.argument("code")
@click.option("--name")
@click.option("--timezone", help='An IANA time zone; "" goes back to the district\'s.')
@click.option("--address", help='Postal address; "" removes it.')
def schools_update(code: str, name: str | None, timezone: str | None, address: str | None) -> None:
    if name is None and timezone is None and address is None:
        fail("give --name, --timezone or --address")
    built = services()
    try:
        school = built.schools().update(
            code, name=name, timezone=timezone, address=address, actor=cli_actor()
        )
    except NoSuchSchool:
        fail(f"no school with code {code!r}")
    except SchoolRefused as error:
        fail(str(error))
    built.session.commit()
    click.echo(f"updated school {school.code}", err=True)


@schools.command("list", help="List the schools.")
@click.option("--json", "as_json", is_flag=True)
def schools_list(as_json: bool) -> None:
    rows = [_summary(school) for school in services().schools().all()]
    if as_json:
        click.echo(json.dumps(rows))
        return
    district_zone = services().settings.timezone
    for row in rows:
        zone = row["timezone"] or f"({district_zone})"
        click.echo(f"{row['code']:12} {row['name']:40} {zone}")


def _summary(school: School) -> dict[str, Any]:
    return {
        "code": school.code,
        "name": school.name,
        "timezone": school.timezone,
        "address": school.address,
    }
