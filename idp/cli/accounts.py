"""``idp accounts``: parent, student and staff accounts."""

from __future__ import annotations

import sys

import click

from idp.accounts.models import AccountType
from idp.accounts.passwords import MAX_PASSWORD_LENGTH, temporary_password
from idp.accounts.service import UsernameTaken
from idp.cli.common import fail, services
from idp.students.guardianship import UnknownStudent
from idp.students.relationships import UnknownRelationship


@click.group(help="Parent, student and staff accounts.")
def accounts() -> None:
    pass


@accounts.command("create", help="Create a confirmed account.")
@click.option("--username", required=True)
@click.option("--email", required=True)
@click.option("--password", help="For scripts and tests; without it the command asks.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--first-name", required=True)
@click.option("--last-name", required=True)
@click.option("--type", "account_type", type=click.Choice([t.value for t in AccountType]), default="parent")
@click.option("--link", "links", multiple=True, metavar="STUDENT_ID:RELATIONSHIP")
@click.option("--temporary", is_flag=True, help="The password must be changed at first sign-in.")
def accounts_create(
    username: str,
    email: str,
    password: str | None,
    password_stdin: bool,
    first_name: str,
    last_name: str,
    account_type: str,
    links: tuple[str, ...],
    temporary: bool,
) -> None:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        fail("the password may not be empty")
    assert password is not None
    built = services()
    try:
        account = built.accounts().create(
            username=username,
            email=email,
            password=password,
            first_name=first_name,
            last_name=last_name,
            account_type=AccountType(account_type),
            temporary=temporary,
        )
        guardianship = built.guardianship()
        # The district's own labels (``idp district set --relationships``), as the forms offer them.
        allowed = built.district_options().current().relationships if links else ()
        for link in links:
            sis_id, sep, relationship = link.partition(":")
            if not sep or not sis_id:
                fail(f"--link takes STUDENT_ID:RELATIONSHIP, not {link!r}")
            guardianship.link(account, guardianship.student_by_sis_id(sis_id), relationship, allowed=allowed)
        built.session.commit()
    except (UsernameTaken, UnknownRelationship, ValueError) as error:
        fail(str(error))
    except UnknownStudent as error:
        fail(f"no student with id {error.args[0]!r}")
    click.echo(f"created account {username}", err=True)


@accounts.command("unlock", help="Lift a sign-in lockout and forget the username's failed attempts.")
@click.argument("username")
def accounts_unlock(username: str) -> None:
    built = services()
    health = built.counters.health
    if health is None:
        fail("IDP_REDIS_URL=memory:// keeps the counters inside the running provider; restart it")
    was_locked = built.accounts().unlock(username)
    if health.fallback_active:
        fail(f"Redis at {built.settings.redis_url} is unavailable; nothing was unlocked")
    built.session.commit()
    click.echo(f"unlocked {username.strip()}" if was_locked else f"{username.strip()} was not locked")


@accounts.command(
    "set-temporary-password",
    help="Give the account a new password to change at its next sign-in; print it once.",
)
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the temporary password from standard input.")
def accounts_set_temporary_password(username: str, password_stdin: bool) -> None:
    built = services()
    account = built.accounts().find_by_username(username)
    if account is None:
        fail(f"no account with the username {username.strip()!r}")
    password = sys.stdin.readline().rstrip("\n") if password_stdin else temporary_password()
    if not password:
        fail("the password may not be empty")
    if len(password) > MAX_PASSWORD_LENGTH:
        fail(f"the password must be at most {MAX_PASSWORD_LENGTH} characters long")
    # Whoever knew the old password is signed out everywhere (the reason staff set a new one).
    ended = built.recovery().set_temporary_password(account, password)
    built.backchannel().tell(ended)
    click.echo(
        f"{account.username} must change this password at the next sign-in; {len(ended)} session(s) ended",
        err=True,
    )
    if not password_stdin:
        click.echo(password)
