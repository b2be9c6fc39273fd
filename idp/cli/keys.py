"""``idp keys``: the signing key set (list, rotate, retire, revoke, prune, migrate-store)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import click
from sqlalchemy.exc import SQLAlchemyError

from idp.audit import audit
from idp.cli.common import cli_actor, fail, services
from idp.config import KEY_STORES
from idp.keys.durations import InvalidDuration, parse_duration
from idp.keys.migrate import copy_key_set
from idp.keys.rotation import KeyChangeRefused, KeyChanges, KeyEvent, KeyRotation, KeyTimings
from idp.keys.store import KeyRecord, KeySetError


@click.group(help="Signing keys.")
def keys() -> None:
    pass


@keys.command("list", help="List the signing keys, their states and when they change.")
@click.option("--json", "as_json", is_flag=True)
def keys_list(as_json: bool) -> None:
    built = services()
    settings = built.settings
    try:
        records = built.key_store.read_records()  # the set as it is now, not as last checked
    except KeySetError as error:
        fail(str(error))
    if as_json:
        entries = [r.as_manifest() for r in records]
        if built.key_store.kind != "files":
            for entry in entries:
                del entry["file"]  # a manifest's file name: the database store has none
        click.echo(json.dumps(entries))
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


@keys.command(
    "migrate-store",
    help="Copy the whole key set from the store in use (IDP_KEYS_STORE) to the other one, "
    "then check the copy; switch IDP_KEYS_STORE afterwards.",
)
@click.option("--to", "destination", type=click.Choice(KEY_STORES), required=True, help="The store to fill.")
@click.option("--replace", is_flag=True, help="Overwrite a destination that holds a key set already.")
def keys_migrate_store(destination: str, replace: bool) -> None:
    built = services()
    current = built.settings.keys_store
    if destination == current:
        fail(
            f"IDP_KEYS_STORE names the {current} store already; migrate-store copies the set from the "
            "store in use to the other one (set IDP_KEYS_STORE to the store that holds your keys)"
        )

    def record() -> None:
        audit(
            built.session,
            "key_set.copied",
            at=built.clock.now(),
            source=current,
            destination=destination,
            replace=str(replace).lower(),  # --replace given: a set there may be overwritten
            actor=cli_actor(),
        )
        built.session.flush()

    try:
        copied = copy_key_set(
            built.key_store, built.key_store_of(destination), replace=replace, before_write=record
        )
    except KeySetError as error:
        fail(str(error))
    except SQLAlchemyError as error:
        fail(f"the audit log could not be written, so nothing was copied: {error.__class__.__name__}")
    built.session.commit()
    for entry in copied.records:
        click.echo(f"{entry.kid:30} {entry.alg:6} {entry.state:8} copied")
    click.echo(
        f"{len(copied.records)} keys copied from {copied.source} to {copied.destination}"
        f"{' (its previous set replaced)' if copied.replaced else ''}, read back and verified."
    )
    click.echo(
        f"Now set IDP_KEYS_STORE={destination} for every process and restart them; "
        f"{copied.source} stays as it was until you remove it."
    )


def _change_keys(change: Callable[[KeyRotation], KeyChanges]) -> None:
    """Make one key-set change, audited (``idp.keys.rotation.audited``), and print what happened."""
    built = services()
    try:
        changes = change(built.key_rotation())
    except (KeyChangeRefused, KeySetError) as error:
        fail(str(error))
    except SQLAlchemyError as error:
        fail(f"the audit log could not be written, so the keys were not changed: {error.__class__.__name__}")
    built.session.commit()
    built.keys.reload()
    for event in changes.events:
        click.echo(_key_event_line(event, built.key_store.kind))
    for skipped in changes.skipped:
        click.echo(f"{skipped.alg}: {skipped.reason}")
    for record, leaves_at in changes.kept:
        until = leaves_at.isoformat() if leaves_at else "unknown"
        click.echo(f"{record.alg}: {record.kid} ({record.state}) stays listed until {until}")
    if not (changes.events or changes.skipped or changes.kept):
        click.echo("nothing to change")


def _key_event_line(event: KeyEvent, kind: str) -> str:
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
        gone = "its file is deleted" if kind == "files" else "its private key is deleted"
        return f"{head} pruned ({details['state']}); {gone}"
    return f"{head} {event.name.removeprefix('key.')}"
