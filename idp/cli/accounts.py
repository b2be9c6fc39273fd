"""``idp accounts``: parent, student and staff accounts."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from idp.accounts.administration import AccountAdministration, TemporaryPasswordRefused
from idp.accounts.legacy_import import ImportReport
from idp.accounts.models import Account, AccountType
from idp.accounts.service import UsernameTaken
from idp.accounts.views.messages import password_message
from idp.cli.common import cli_actor, fail, services
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
    built.session.commit()
    click.echo(f"unlocked {username.strip()}" if was_locked else f"{username.strip()} was not locked")
    if health.fallback_active:
        # The database's counters were unlocked (and committed); Redis, unreachable, may still
        # hold the lock, which would apply again when it answers.
        raise click.ClickException(
            # Not the URL itself: it may carry Redis's password.
            "Redis (IDP_REDIS_URL) is unavailable and may still hold a lock; "
            "run this command again once it answers"
        )


def _administration() -> AccountAdministration:
    return services().administration(actor=cli_actor())


def _account(username: str) -> Account:
    account = services().accounts().find_by_username(username) if "\x00" not in username else None
    if account is None:
        fail(f"no account with the username {username.strip()!r}")
    return account


@accounts.command(
    "set-temporary-password",
    help="Give the account a generated password to change at its next sign-in; print it once. "
    "It stops working after IDP_TEMPORARY_PASSWORD_SECONDS, and the account is signed out everywhere.",
)
@click.argument("username")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input; it must pass the policy."
)
def accounts_set_temporary_password(username: str, password_stdin: bool) -> None:
    account = _account(username)
    chosen = sys.stdin.readline().rstrip("\n") if password_stdin else None
    if chosen is not None and not chosen:
        fail("the password may not be empty")
    try:
        given = _administration().set_temporary_password(account, chosen)
    except TemporaryPasswordRefused as refused:
        # The pages' own words for each rule it breaks.
        fail(" ".join(password_message(violation, refused.rules) for violation in refused.violations))
    click.echo(
        f"{account.username} must change this password at the next sign-in, before "
        f"{given.expires_at:%Y-%m-%d %H:%M} UTC; {given.ended_sessions} session(s) ended",
        err=True,
    )
    if chosen is None:
        click.echo(given.password)


@accounts.command("disable", help="Keep the account out, and sign it out everywhere at once.")
@click.argument("username")
@click.option("--reason", required=True, help="Why, for the audit trail and the staff who look later.")
def accounts_disable(username: str, reason: str) -> None:
    account = _account(username)
    try:
        ended = _administration().disable(account, reason=reason)
    except ValueError as error:
        fail(str(error))
    click.echo(f"disabled {account.username}; {ended} session(s) ended", err=True)


@accounts.command("enable", help="Let a disabled account sign in again.")
@click.argument("username")
def accounts_enable(username: str) -> None:
    account = _account(username)
    if _administration().enable(account):
        click.echo(f"enabled {account.username}", err=True)
    else:
        click.echo(f"{account.username} was not disabled", err=True)


@accounts.command(
    "expire",
    help="Set when the account expires: an ISO 8601 date or time (UTC unless it says otherwise), "
    "'now', or 'never'. An account that expires is signed out everywhere at that time.",
)
@click.argument("username")
@click.option("--at", "at_text", required=True, metavar="DATE|never")
def accounts_expire(username: str, at_text: str) -> None:
    account = _account(username)
    try:
        at = _expiry(at_text)
    except ValueError:
        fail(
            "--at takes a date like 2027-06-30, a time like 2027-06-30T17:00-07:00, now or never;"
            f" not {at_text!r}"
        )
    ended = _administration().expire(account, at)
    when = "never" if at is None else f"at {at:%Y-%m-%d %H:%M} UTC"
    click.echo(f"{account.username} expires {when}; {ended} session(s) ended", err=True)


def _expiry(text: str) -> datetime | None:
    text = text.strip().lower()
    if text == "never":
        return None
    if text == "now":
        return services().clock.now()
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    at = at.astimezone(UTC)
    if not 2000 <= at.year <= 9000:
        raise ValueError(text)
    return at


@accounts.command(
    "import",
    help="Import an old portal's accounts from a UTF-8 CSV file, with their password hashes (verified "
    "and upgraded to argon2id at each first sign-in) and student links. All or nothing: one rejected "
    "row and nothing is written. See docs/operations/legacy-accounts.md.",
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check every row and print the report; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def accounts_import(file: Path, dry_run: bool, as_json: bool) -> None:
    built = services()
    try:
        with file.open("rb") as stream:
            report = built.legacy_accounts().import_csv(
                stream, name=str(file), dry_run=dry_run, actor=cli_actor()
            )
    except OSError as error:
        fail(f"cannot read {file}: {error.strerror or error}")
    if as_json:
        click.echo(json.dumps(report.as_json()))
    else:
        _print_import_report(report)
    if report.rejected_count:
        fail(f"nothing was imported: {report.rejected_count} row(s) rejected")
    if dry_run:
        click.echo("dry run: nothing was written", err=True)


def _print_import_report(report: ImportReport) -> None:
    click.echo(f"{'':10}{'accounts':>10}{'links':>8}")
    for kind in ("created", "updated", "unchanged", "removed"):
        counts = getattr(report, kind)
        click.echo(f"{kind:10}{counts.accounts:>10}{counts.links:>8}")
    click.echo(f"{'rejected':10}{report.rejected_count:>10}")
    for rejected in report.as_json()["rejected"]:
        click.echo(f"{rejected['file']}:{rejected['line']}: {rejected['reason']}")


@accounts.command("legacy-status", help="Count the accounts still on an imported (legacy) password hash.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def accounts_legacy_status(as_json: bool) -> None:
    schemes = services().legacy_accounts().status()
    if as_json:
        click.echo(json.dumps({"schemes": schemes, "total": sum(schemes.values())}))
        return
    click.echo(f"{'scheme':20}{'accounts':>10}")
    for scheme, count in schemes.items():
        click.echo(f"{scheme:20}{count:>10}")
    click.echo(f"{'total':20}{sum(schemes.values()):>10}")
