"""``idp policy`` and ``idp district``: password policies and the district's options."""

from __future__ import annotations

import json
from typing import Any

import click

from idp.accounts.district import OPTION_NAMES
from idp.accounts.password_policy import DepartureRule, PasswordRules, UnknownSchool
from idp.cli.common import cli_actor, fail, services


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


def _count(number: int, noun: str) -> str:
    """Return ``number`` and ``noun``, plural unless the number is one."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _what(rule: DepartureRule, rules: PasswordRules) -> str:
    """Say what ``rules`` do where they depart by ``rule``."""
    days = rules.max_age.days if rules.max_age else 0
    return {
        DepartureRule.MIN_LENGTH: f"a minimum length of {_count(rules.min_length, 'character')}",
        DepartureRule.MAX_LENGTH: f"a maximum length of {_count(rules.max_length, 'character')}",
        DepartureRule.REQUIRE_UPPER_LOWER: "composition rules (upper and lower case)",
        DepartureRule.REQUIRE_LETTER_NUMBER: "composition rules (a letter and a number)",
        DepartureRule.REQUIRE_SPECIAL: "composition rules (a special character)",
        DepartureRule.MAX_AGE: f"periodic expiry (after {_count(days, 'day')})",
        DepartureRule.BLOCK_COMMON: "the common-password blocklist turned off",
        DepartureRule.BLOCK_CONTEXT: "the context-word blocklist turned off",
    }[rule]


def _departure_lines(rules: PasswordRules) -> list[str]:
    """Word each departure of ``rules`` from NIST SP 800-63B-4 on a line of its own."""
    return [
        f"departs from NIST SP 800-63B-4: {_what(departure.rule, rules)} — {departure.reason}"
        for departure in rules.departures()
    ]


def _departures_json(rules: PasswordRules) -> list[dict[str, str]]:
    """Return each departure of ``rules`` as its rule and its reason."""
    return [{"rule": str(departure.rule), "reason": departure.reason} for departure in rules.departures()]


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
        rules = services().password_policies().set_policy(school_code, actor=cli_actor(), **changes)
    except UnknownSchool:
        fail(f"no school with code {school_code!r}")
    except ValueError as error:
        fail(str(error))
    services().session.commit()
    click.echo(f"{school_code or 'district'}: {json.dumps(_rules_summary(rules))}", err=True)
    for line in _departure_lines(rules):
        click.echo(line, err=True)


@policy.command("reset", help="Drop a school's own policy (or the district's: back to NIST's).")
@click.option("--school", "school_code")
def policy_reset(school_code: str | None) -> None:
    try:
        services().password_policies().reset_policy(school_code, actor=cli_actor())
    except UnknownSchool:
        fail(f"no school with code {school_code!r}")
    services().session.commit()


@policy.command("show", help="Show the district default and every school's own policy.")
@click.option("--json", "as_json", is_flag=True)
def policy_show(as_json: bool) -> None:
    rows = [(code or "district", rules) for code, rules in services().password_policies().all_policies()]
    if as_json:
        click.echo(
            json.dumps(
                {
                    scope: {**_rules_summary(rules), "departures": _departures_json(rules)}
                    for scope, rules in rows
                }
            )
        )
        return
    for scope, rules in rows:
        shown = " ".join(f"{name}={value}" for name, value in _rules_summary(rules).items())
        click.echo(f"{scope:12} {shown}")
        for line in _departure_lines(rules):
            click.echo(f"{'':12} {line}")


# --- district -----------------------------------------------------------------------------
@click.group(help="District options (defaults from the environment).")
def district() -> None:
    pass


@district.command("set", help="Change district options.")
@click.option("--name", help="The district's name (also a word passwords may not be made from).")
@click.option("--require-email-verification/--no-require-email-verification", default=None)
@click.option("--allow-email-change/--no-allow-email-change", default=None)
@click.option("--allow-password-change/--no-allow-password-change", default=None)
@click.option("--relationships", help='Comma-separated labels, e.g. "Mother,Father,Guardian,Other".')
@click.option("--lockout-threshold", type=int, help="Failed sign-ins that lock a username (1 to 100).")
@click.option("--lockout-seconds", type=int, help="How long a lock lasts (60 to 86400 seconds).")
@click.option(
    "--single-use-access-passwords/--no-single-use-access-passwords",
    default=None,
    help="An Access Password links one guardian, then stops working.",
)
def district_set(relationships: str | None, **changes: Any) -> None:
    if relationships is not None:
        changes["relationships"] = tuple(relationships.split(","))
    try:
        services().district_options().set(actor=cli_actor(), **changes)
    except ValueError as error:
        fail(str(error))
    services().session.commit()


@district.command("show", help="Show the district options in force.")
@click.option("--json", "as_json", is_flag=True)
def district_show(as_json: bool) -> None:
    current = services().district_options().current()
    values = {name: getattr(current, name) for name in OPTION_NAMES}
    values["relationships"] = list(current.relationships)
    if as_json:
        click.echo(json.dumps(values))
        return
    for name, value in values.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        click.echo(f"{name:28} {shown}")
