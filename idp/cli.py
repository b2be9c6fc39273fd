"""The ``idp`` command: database, demo district, clients, students, accounts, keys."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import click
from flask import Flask
from flask.cli import FlaskGroup
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from idp.accounts.models import AccountType
from idp.accounts.password_policy import PasswordPolicyService
from idp.accounts.passwords import MAX_PASSWORD_LENGTH, temporary_password
from idp.accounts.service import UsernameTaken
from idp.accounts.wiring import district_options
from idp.audit import audit
from idp.demo import DEFAULT_RP_BASE_URL, seed_demo
from idp.extensions import db
from idp.keyring import KeyRecord, KeySetError, read_manifest
from idp.keys.durations import InvalidDuration, parse_duration
from idp.keys.rotation import KeyChangeRefused, KeyChanges, KeyEvent, KeyRotation, KeyTimings
from idp.oauth.clients import ClientService, ClientSpec, InvalidClientSettings, UnknownClient
from idp.oauth.scopes import DEFAULT_CLIENT_SCOPE
from idp.runtime import runtime
from idp.students.guardianship import StudentExists, UnknownStudent
from idp.students.relationships import UnknownRelationship


def _create_app() -> Flask:
    from idp import create_app

    return create_app()


class IdpGroup(FlaskGroup):
    """Flask's CLI with configuration errors reported as one line instead of a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        from idp.config import ConfigError
        from idp.keyring import KeySetError

        try:
            return super().main(*args, **kwargs)
        except (ConfigError, KeySetError) as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(1)


main = IdpGroup(
    create_app=_create_app,
    add_default_commands=True,
    add_version_option=False,
    help="Operate the school identity provider.",
)


def register_commands(app: Flask) -> None:
    app.cli.add_command(demo)
    app.cli.add_command(clients)
    app.cli.add_command(students)
    app.cli.add_command(accounts)
    app.cli.add_command(keys)
    from idp.accounts.commands import COMMANDS as account_commands

    for command in account_commands:  # policy, district, mail
        app.cli.add_command(command)


def _fail(message: str) -> None:
    db.session.rollback()
    raise click.ClickException(message)


# --- demo ---------------------------------------------------------------------------------
@click.group(help="The demo district.")
def demo() -> None:
    pass


@demo.command("seed", help="Create (or refresh) the demo district and the demo portal's client.")
@click.option("--rp-base-url", default=DEFAULT_RP_BASE_URL, show_default=True)
def demo_seed(rp_base_url: str) -> None:
    try:
        summary = seed_demo(runtime(), rp_base_url=rp_base_url.rstrip("/"))
    except InvalidClientSettings as error:
        _fail(str(error))
        return
    db.session.commit()
    click.echo(summary)


# --- clients ------------------------------------------------------------------------------
@click.group(help="Relying parties (school portals).")
def clients() -> None:
    pass


@clients.command("create", help="Register a client; prints its id and secret once.")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True)
@click.option("--post-logout-redirect-uri", "post_logout_uris", multiple=True)
@click.option("--backchannel-logout-uri")
@click.option("--public", is_flag=True, help="No secret; PKCE only (browser and mobile apps).")
@click.option("--first-party", is_flag=True, help="Skip the consent page.")
@click.option("--scope", default=DEFAULT_CLIENT_SCOPE, show_default=True)
@click.option("--id-token-alg", type=click.Choice(["RS256", "ES256"]), default="RS256")
@click.option("--allow-no-pkce", is_flag=True, help="Exempt a legacy confidential client from PKCE.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout and nothing else.")
def clients_create(
    name: str,
    redirect_uris: tuple[str, ...],
    post_logout_uris: tuple[str, ...],
    backchannel_logout_uri: str | None,
    public: bool,
    first_party: bool,
    scope: str,
    id_token_alg: str,
    allow_no_pkce: bool,
    as_json: bool,
) -> None:
    spec = ClientSpec(
        name=name,
        redirect_uris=list(redirect_uris),
        post_logout_redirect_uris=list(post_logout_uris),
        backchannel_logout_uri=backchannel_logout_uri,
        public=public,
        first_party=first_party,
        scope=scope,
        id_token_alg=id_token_alg,
        allow_no_pkce=allow_no_pkce,
    )
    try:
        registered = ClientService(db.session).create(spec)
    except InvalidClientSettings as error:
        _fail(str(error))
        return
    db.session.commit()
    output: dict[str, str] = {"client_id": registered.client.client_id}
    if registered.client_secret:
        output["client_secret"] = registered.client_secret
    if as_json:
        click.echo(json.dumps(output))
        return
    click.echo(f"client_id      {output['client_id']}")
    if registered.client_secret:
        click.echo(f"client_secret  {registered.client_secret}   (shown once)")


@clients.command("list", help="List registered clients.")
@click.option("--json", "as_json", is_flag=True)
def clients_list(as_json: bool) -> None:
    rows = ClientService(db.session).all()
    if as_json:
        click.echo(json.dumps([_client_summary(c) for c in rows]))
        return
    for client in rows:
        kind = "public" if client.is_public else "confidential"
        party = "first-party" if client.is_first_party else "third-party"
        click.echo(
            f"{client.client_id:26} {client.name:30} {kind:12} {party:11} {' '.join(client.redirect_uris)}"
        )


def _client_summary(client: Any) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "public": client.is_public,
        "first_party": client.is_first_party,
        "redirect_uris": client.redirect_uris,
        "scope": client.scope,
    }


@clients.command("delete", help="Delete a client and everything issued to it.")
@click.argument("client_id")
def clients_delete(client_id: str) -> None:
    try:
        ClientService(db.session).delete(client_id)
    except UnknownClient:
        _fail(f"no client with id {client_id!r}")
    db.session.commit()
    click.echo(f"deleted {client_id}", err=True)


# --- students -----------------------------------------------------------------------------
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
            _fail(f"{label} must be 1 to 32 characters")
    # The column sizes, checked here so that SQLite and PostgreSQL refuse the same input.
    for label, value, limit in (("--first-name", first_name, 100), ("--last-name", last_name, 100)):
        if not value.strip() or len(value.strip()) > limit:
            _fail(f"{label} must be 1 to {limit} characters")
    if grade is not None and len(grade) > 16:
        _fail("--grade must be at most 16 characters")
    try:
        runtime().guardianship().create_student(
            sis_id=sis_id.strip(),
            first_name=first_name.strip(),
            last_name=last_name.strip(),
            school_code=school.strip(),
            access_id=access_id.strip(),
            access_password=access_password,
            grade=grade,
        )
        db.session.commit()
    except (StudentExists, IntegrityError) as error:
        _fail(str(error.orig) if isinstance(error, IntegrityError) else str(error))
    click.echo(f"created student {sis_id}", err=True)


# --- accounts -----------------------------------------------------------------------------
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
        _fail("the password may not be empty")
    assert password is not None
    rt = runtime()
    try:
        account = rt.accounts().create(
            username=username,
            email=email,
            password=password,
            first_name=first_name,
            last_name=last_name,
            account_type=AccountType(account_type),
            temporary=temporary,
        )
        guardianship = rt.guardianship()
        # The district's own labels (``idp district set --relationships``), as the forms offer them.
        allowed = district_options().relationships if links else ()
        for link in links:
            sis_id, sep, relationship = link.partition(":")
            if not sep or not sis_id:
                _fail(f"--link takes STUDENT_ID:RELATIONSHIP, not {link!r}")
            guardianship.link(account, guardianship.student_by_sis_id(sis_id), relationship, allowed=allowed)
        db.session.commit()
    except (UsernameTaken, UnknownRelationship, ValueError) as error:
        _fail(str(error))
    except UnknownStudent as error:
        _fail(f"no student with id {error.args[0]!r}")
    click.echo(f"created account {username}", err=True)


@accounts.command("unlock", help="Lift a sign-in lockout and forget the username's failed attempts.")
@click.argument("username")
def accounts_unlock(username: str) -> None:
    from idp.cache import redis_client, redis_health

    rt = runtime()
    if redis_client() is None:
        _fail("IDP_REDIS_URL=memory:// keeps the counters inside the running provider; restart it")
    was_locked = rt.accounts().unlock(username)
    if redis_health().fallback_active:
        _fail(f"Redis at {rt.settings.redis_url} is unavailable; nothing was unlocked")
    db.session.commit()
    click.echo(f"unlocked {username.strip()}" if was_locked else f"{username.strip()} was not locked")


@accounts.command(
    "set-temporary-password",
    help="Give the account a new password to change at its next sign-in; print it once.",
)
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the temporary password from standard input.")
def accounts_set_temporary_password(username: str, password_stdin: bool) -> None:
    rt = runtime()
    account = rt.accounts().find_by_username(username)
    if account is None:
        _fail(f"no account with the username {username.strip()!r}")
    assert account is not None
    password = sys.stdin.readline().rstrip("\n") if password_stdin else temporary_password()
    if not password:
        _fail("the password may not be empty")
    if len(password) > MAX_PASSWORD_LENGTH:
        _fail(f"the password must be at most {MAX_PASSWORD_LENGTH} characters long")
    PasswordPolicyService(db.session, hasher=rt.hasher, clock=rt.clock).set_temporary_password(
        account, password
    )
    # Whoever knew the old password is signed out everywhere (the reason staff set a new one).
    ended = rt.sessions().end_all(account.id)
    rt.families().revoke_for_account(account.id, reason="temporary_password")
    db.session.commit()
    backchannel = rt.backchannel()
    for gone in ended:
        backchannel.notify(gone)
    db.session.commit()
    click.echo(
        f"{account.username} must change this password at the next sign-in; {len(ended)} session(s) ended",
        err=True,
    )
    if not password_stdin:
        click.echo(password)


# --- keys ---------------------------------------------------------------------------------
@click.group(help="Signing keys.")
def keys() -> None:
    pass


@keys.command("list", help="List the signing keys, their states and when they change.")
@click.option("--json", "as_json", is_flag=True)
def keys_list(as_json: bool) -> None:
    settings = runtime().settings
    records = read_manifest(settings.keys_dir)  # the manifest as it is now, not as last checked
    if as_json:
        click.echo(json.dumps([r.as_manifest() for r in records]))
        return
    timings = KeyTimings.from_settings(settings)
    for record in records:
        click.echo(
            f"{record.kid:30} {record.alg:6} {record.state:8} {record.created_at.isoformat()}  "
            + _key_schedule(record, timings)
        )


def _key_schedule(record: KeyRecord, timings: KeyTimings) -> str:
    if record.state == "next":
        return f"can sign from {timings.ready_at(record).isoformat()}"
    if record.state == "active":
        return f"signing since {(record.activated_at or record.created_at).isoformat()}"
    leaves_at = timings.leaves_at(record)
    until = leaves_at.isoformat() if leaves_at else "unknown (the next prune starts the grace time)"
    return f"{'published' if record.state == 'retired' else 'listed'} until {until}"


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> timedelta | None:
    try:
        return None if value is None else parse_duration(value)
    except InvalidDuration as error:
        raise click.BadParameter(str(error)) from None


@keys.command("rotate", help="Promote the next key, retire the active one, publish a new next key.")
@click.option("--alg", type=click.Choice(["RS256", "ES256"], case_sensitive=False), help="Default: all.")
@click.option("--if-older-than", callback=_duration, help="Only when the active key is older (90d, 12h).")
@click.option("--force", is_flag=True, help="Emergency: promote a next key younger than the lead time.")
def keys_rotate(alg: str | None, if_older_than: timedelta | None, force: bool) -> None:
    algorithms = [alg.upper()] if alg else None
    _change_keys(lambda keys: keys.rotate(algorithms, force=force, if_older_than=if_older_than))


@keys.command("retire", help="Withdraw a next key gracefully (it stays published for the grace time).")
@click.argument("kid")
def keys_retire(kid: str) -> None:
    _change_keys(lambda keys: keys.retire(kid))


@keys.command("revoke", help="Compromise: unpublish a key now and refuse its tokens.")
@click.argument("kid")
def keys_revoke(kid: str) -> None:
    _change_keys(lambda keys: keys.revoke(kid))


@keys.command("prune", help="Remove retired and revoked keys whose grace time is over.")
def keys_prune() -> None:
    _change_keys(lambda keys: keys.prune())


def _change_keys(change: Callable[[KeyRotation], KeyChanges]) -> None:
    """Make one key-set change, audit each of its events, and print what happened."""
    rt = runtime()

    def audit_events(events: tuple[KeyEvent, ...]) -> None:
        # Flushed before the manifest is written, committed after: a database that cannot take the
        # audit rows stops the change (a failed commit after a flushed insert is all that is left).
        for event in events:
            audit(db.session, event.name, at=rt.clock.now(), kid=event.kid, alg=event.alg, **event.details)
        db.session.flush()

    rotation = KeyRotation(
        rt.settings.keys_dir,
        clock=rt.clock,
        timings=KeyTimings.from_settings(rt.settings),
        passphrase=rt.settings.keys_passphrase,
        record=audit_events,
    )
    try:
        changes = change(rotation)
    except (KeyChangeRefused, KeySetError) as error:
        _fail(str(error))
        return
    except SQLAlchemyError as error:
        db.session.rollback()
        _fail(f"the audit log could not be written, so the keys were not changed: {error.__class__.__name__}")
        return
    db.session.commit()
    rt.keys().reload()
    for event in changes.events:
        click.echo(_key_event_line(event))
    for skipped in changes.skipped:
        click.echo(f"{skipped.alg}: {skipped.reason}")
    for record, leaves_at in changes.kept:
        until = leaves_at.isoformat() if leaves_at else "unknown"
        click.echo(f"{record.alg}: {record.kid} ({record.state}) stays listed until {until}")
    if not (changes.events or changes.skipped or changes.kept):
        click.echo("nothing to change")


def _key_event_line(event: KeyEvent) -> str:
    details = event.details
    head = f"{event.alg}: {event.kid}"
    if event.name == "key.rotated":
        retired = f"; {details['retired']} retired" if "retired" in details else ""
        return f"{head} signs now{retired}; {details['next']} published as the next key"
    if event.name == "key.published":
        return f"{head} published as the next key; it can sign from {details['can_sign_from']}"
    if event.name == "key.revoked":
        return f"{head} revoked (was {details['previous_state']}): unpublished, its tokens refused"
    if event.name == "key.pruned":
        return f"{head} pruned ({details['state']}); its file is deleted"
    return f"{head} {event.name.removeprefix('key.')}"
