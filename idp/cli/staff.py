"""``idp staff``: district staff who sign in to the console."""

from __future__ import annotations

import json
import sys

import click

from idp.accounts.service import UsernameTaken
from idp.admin.models import StaffRole
from idp.admin.staff import StaffRefused
from idp.cli.common import fail, services


@click.group(help="District staff who sign in to the console.")
def staff() -> None:
    pass


@staff.command(
    "create", help="Create a staff member; the first sign-in changes the password and enrols TOTP."
)
@click.option("--username", required=True)
@click.option("--email", required=True)
@click.option("--first-name", required=True)
@click.option("--last-name", required=True)
@click.option("--role", required=True, type=click.Choice([role.value for role in StaffRole]))
@click.option("--school", "schools", multiple=True, metavar="CODE", help="A school admin's school (repeat).")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the (still temporary) password from standard input instead of generating one.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def staff_create(
    username: str,
    email: str,
    first_name: str,
    last_name: str,
    role: str,
    schools: tuple[str, ...],
    password_stdin: bool,
    as_json: bool,
) -> None:
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    if password_stdin and not password:
        fail("the password may not be empty")
    try:
        created = (
            services()
            .staff()
            .create(
                username=username,
                email=email,
                first_name=first_name,
                last_name=last_name,
                role=StaffRole(role),
                school_codes=schools,
                password=password,
            )
        )
    except (StaffRefused, UsernameTaken, ValueError) as error:
        fail(str(error))
    account = created.account
    if as_json:
        document = {
            "id": account.id,
            "username": account.username,
            "role": role,
            "schools": list(dict.fromkeys(schools)),
            "temporary_password": created.temporary_password,
        }
        click.echo(json.dumps(document))
        return
    click.echo(f"created staff member {account.username} ({role})", err=True)
    if created.temporary_password is not None:
        # Shown this once only: it is kept hashed.
        click.echo(f"temporary password: {created.temporary_password}")
