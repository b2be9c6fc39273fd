"""``idp policy``, ``idp district`` and ``idp mail``: password policies, district options, the outbox."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from flask import current_app

from idp.accounts.district import OPTION_NAMES, DistrictOptions, DistrictOptionsService
from idp.accounts.password_policy import PasswordPolicyService, PasswordRules, UnknownSchool
from idp.accounts.wiring import recovery
from idp.audit import audit
from idp.extensions import db
from idp.mail.delivery import deliver_due, transport_for
from idp.retention import Schedule, prune
from idp.runtime import runtime


def _fail(message: str) -> None:
    db.session.rollback()
    raise click.ClickException(message)


def _policies() -> PasswordPolicyService:
    rt = runtime()
    return PasswordPolicyService(db.session, hasher=rt.hasher, clock=rt.clock)


def _rules_summary(rules: PasswordRules) -> dict[str, Any]:
    return {
        "min_length": rules.min_length,
        "max_length": rules.max_length,
        "require_upper_lower": rules.require_upper_lower,
        "require_letter_number": rules.require_letter_number,
        "require_special": rules.require_special,
        "history": rules.history_count,
        "max_age_days": rules.max_age.days if rules.max_age else None,
        "block_common": rules.block_common,
        "block_context": rules.block_context,
    }


# --- policy -------------------------------------------------------------------------------
@click.group(help="Password policies: the district default and each school's own.")
def policy() -> None:
    pass


@policy.command("set", help="Change rules of the district default, or of one school with --school.")
@click.option("--school", "school_code", help="School code; without it the district default changes.")
@click.option("--min-length", type=int)
@click.option("--require-upper-lower/--no-require-upper-lower", default=None)
@click.option("--require-letter-number/--no-require-letter-number", default=None)
@click.option("--require-special/--no-require-special", default=None)
@click.option("--history", "history_count", type=int, help="Previous passwords that may not be reused.")
@click.option("--max-age-days", type=int, help="Days before a password must change (0: never).")
@click.option("--block-common/--no-block-common", default=None)
@click.option("--block-context/--no-block-context", default=None)
def policy_set(school_code: str | None, **changes: Any) -> None:
    try:
        rules = _policies().set_policy(school_code, **changes)
    except UnknownSchool:
        _fail(f"no school with code {school_code!r}")
        return
    except ValueError as error:
        _fail(str(error))
        return
    db.session.commit()
    click.echo(f"{school_code or 'district'}: {json.dumps(_rules_summary(rules))}", err=True)


@policy.command("reset", help="Drop a school's own policy (or the district's: back to NIST's).")
@click.option("--school", "school_code")
def policy_reset(school_code: str | None) -> None:
    try:
        _policies().reset_policy(school_code)
    except UnknownSchool:
        _fail(f"no school with code {school_code!r}")
    db.session.commit()


@policy.command("show", help="Show the district default and every school's own policy.")
@click.option("--json", "as_json", is_flag=True)
def policy_show(as_json: bool) -> None:
    rows = [(code or "district", _rules_summary(rules)) for code, rules in _policies().all_policies()]
    if as_json:
        click.echo(json.dumps({scope: summary for scope, summary in rows}))
        return
    for scope, summary in rows:
        rules = " ".join(f"{name}={value}" for name, value in summary.items())
        click.echo(f"{scope:12} {rules}")


# --- district -----------------------------------------------------------------------------
def _options() -> DistrictOptionsService:
    rt = runtime()
    return DistrictOptionsService(
        db.session, defaults=DistrictOptions.from_settings(rt.settings), clock=rt.clock
    )


@click.group(help="District options (defaults from the environment).")
def district() -> None:
    pass


@district.command("set", help="Change district options.")
@click.option("--name", help="The district's name (also a word passwords may not be made from).")
@click.option("--require-email-verification/--no-require-email-verification", default=None)
@click.option("--allow-email-change/--no-allow-email-change", default=None)
@click.option("--allow-password-change/--no-allow-password-change", default=None)
@click.option("--relationships", help='Comma-separated labels, e.g. "Mother,Father,Guardian,Other".')
def district_set(relationships: str | None, **changes: Any) -> None:
    if relationships is not None:
        changes["relationships"] = tuple(relationships.split(","))
    try:
        _options().set(**changes)
    except ValueError as error:
        _fail(str(error))
    db.session.commit()


@district.command("show", help="Show the district options in force.")
@click.option("--json", "as_json", is_flag=True)
def district_show(as_json: bool) -> None:
    current = _options().current()
    values = {name: getattr(current, name) for name in OPTION_NAMES}
    values["relationships"] = list(current.relationships)
    if as_json:
        click.echo(json.dumps(values))
        return
    for name, value in values.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        click.echo(f"{name:28} {shown}")


# --- mail ---------------------------------------------------------------------------------
# Retention is counted in days: an hourly pass keeps each batch of deletes small, and passes
# more often would only scan the same tables again (idp.retention).
PRUNE_EVERY = timedelta(hours=1)


@click.group(help="The mail outbox.")
def mail() -> None:
    pass


@mail.command(
    "worker",
    help=(
        "Every IDP_MAIL_POLL_SECONDS until stopped: answer recovery requests, send due mail, end "
        "timed-out sessions and tell their portals, retry back-channel logouts that failed; once "
        "an hour, delete rows past IDP_RETENTION_SECONDS. --once does it all once and exits."
    ),
)
@click.option("--once", is_flag=True, help="Send what is due, then exit.")
def mail_worker(once: bool) -> None:
    rt = runtime()
    try:
        transport = transport_for(rt.settings.smtp_url, Path(current_app.instance_path))
    except ValueError as error:
        _fail(str(error))
        return
    pruning = Schedule(PRUNE_EVERY)
    keep = timedelta(seconds=rt.settings.retention_seconds)
    while True:
        if pruning.due(rt.clock.now()):
            pruned = prune(db.session, now=rt.clock.now(), keep=keep)
            if pruned.total:
                click.echo(f"pruned {pruned.describe()}", err=True)
        ended = end_timed_out_sessions()
        if ended:
            click.echo(f"ended {ended} timed-out session(s)", err=True)
        told, not_told = rt.backchannel().retry_due()
        if told or not_told:
            click.echo(f"back-channel logout retries: delivered {told}, failed {not_told}", err=True)
        # Trouble-page requests before the outbox: the worker decides whom to write to
        # (idp.accounts.recovery), and the mail goes out in the same pass.
        answered = recovery().answer_requests()
        sent, failed = deliver_due(db.session, transport, sender=rt.settings.mail_from, clock=rt.clock)
        if answered:
            click.echo(f"queued {answered} recovery mail(s)", err=True)
        if sent or failed or once:
            click.echo(f"sent {sent}, failed {failed}", err=True)
        if once:
            return
        time.sleep(rt.settings.mail_poll_seconds)


def end_timed_out_sessions() -> int:
    """End sessions past their timeouts and tell their portals (Back-Channel Logout 1.0)."""
    rt = runtime()
    ended = rt.sessions().end_timed_out()
    for gone in ended:
        audit(db.session, "op_session.timed_out", account_id=gone.account_id, sid=gone.sid)
    db.session.commit()
    if any(gone.client_ids for gone in ended):
        backchannel = rt.backchannel()
        for gone in ended:
            backchannel.notify(gone)
        db.session.commit()
    return len(ended)


COMMANDS = (policy, district, mail)
