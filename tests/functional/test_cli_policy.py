"""``idp policy set`` and ``idp policy show`` say where a policy departs from NIST SP 800-63B-4."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import Result
from flask import Flask

from idp.extensions import db
from idp.students.models import Student

PREFIX = "departs from NIST SP 800-63B-4: "
COMPOSITION = "SP 800-63B-4 3.1.1.2 forbids requiring mixtures of character types"
SUMMARY_KEYS = {
    "min_length",
    "max_length",
    "require_upper_lower",
    "require_letter_number",
    "require_special",
    "history",
    "max_age_days",
    "block_common",
    "block_context",
}
Run = Callable[..., Result]


@pytest.fixture
def idp(app: Flask) -> Run:
    """Run ``idp ARGS…`` against the test app; stdout and stderr come back apart."""
    runner = app.test_cli_runner()

    def run(*args: str) -> Result:
        result = runner.invoke(args=list(args))
        db.session.rollback()  # read what the command committed, nothing it left pending
        db.session.expire_all()
        return result

    return run


def departures_in(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if PREFIX in line]


# --- policy set ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "line"),
    [
        (("--require-upper-lower",), f"{PREFIX}composition rules (upper and lower case) — {COMPOSITION}"),
        (("--require-letter-number",), f"{PREFIX}composition rules (a letter and a number) — {COMPOSITION}"),
        (("--require-special",), f"{PREFIX}composition rules (a special character) — {COMPOSITION}"),
        (
            ("--max-age-days", "90"),
            f"{PREFIX}periodic expiry (after 90 days) — SP 800-63B-4 3.1.1.2 forbids requiring periodic "
            "password changes (a change is forced only on evidence of compromise)",
        ),
        (("--max-age-days", "1"), f"{PREFIX}periodic expiry (after 1 day) — "),
        (
            ("--min-length", "8"),
            f"{PREFIX}a minimum length of 8 characters — SP 800-63B-4 3.1.1.2 requires at least 15 "
            "characters when a password is the only factor, as it is at sign-in here",
        ),
        (("--min-length", "14"), f"{PREFIX}a minimum length of 14 characters — "),
        (("--no-block-common",), f"{PREFIX}the common-password blocklist turned off — SP 800-63B-4"),
        (("--no-block-context",), f"{PREFIX}the context-word blocklist turned off — SP 800-63B-4"),
    ],
)
def test_policy_set_says_each_departure_with_its_reason_on_stderr(
    idp: Run, options: tuple[str, ...], line: str
) -> None:
    result = idp("policy", "set", *options)

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    (said,) = departures_in(result.stderr)
    assert said.startswith(line)


def test_policy_set_within_nist_says_no_departure(idp: Run) -> None:
    result = idp("policy", "set", "--min-length", "15", "--history", "5")

    assert result.exit_code == 0, result.output
    assert departures_in(result.stderr) == []
    assert result.stderr.startswith("district: {")


def test_policy_set_says_every_departure_one_line_each(idp: Run) -> None:
    result = idp(
        "policy",
        "set",
        "--min-length",
        "8",
        "--require-upper-lower",
        "--require-letter-number",
        "--require-special",
        "--max-age-days",
        "90",
        "--no-block-common",
        "--no-block-context",
    )

    assert result.exit_code == 0, result.output
    assert len(departures_in(result.stderr)) == 7


def test_policy_set_back_within_nist_says_nothing_more(idp: Run) -> None:
    idp("policy", "set", "--require-special")

    result = idp("policy", "set", "--no-require-special")

    assert result.exit_code == 0, result.output
    assert departures_in(result.stderr) == []


# --- policy show --------------------------------------------------------------------------
@pytest.fixture
def classic_school(idp: Run, make_student: Callable[..., Student]) -> str:
    """School LES with classic rules of its own; the district keeps NIST's."""
    make_student(school_code="LES")
    result = idp("policy", "set", "--school", "LES", "--min-length", "8", "--require-special")
    assert result.exit_code == 0, result.output
    return "LES"


def test_policy_show_says_the_departures_of_each_scope_under_it(idp: Run, classic_school: str) -> None:
    result = idp("policy", "show")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("district ")
    assert lines[1].startswith(f"{classic_school} ")
    assert [line.strip() for line in lines[2:]] == [
        f"{PREFIX}a minimum length of 8 characters — SP 800-63B-4 3.1.1.2 requires at least 15 characters "
        "when a password is the only factor, as it is at sign-in here",
        f"{PREFIX}composition rules (a special character) — {COMPOSITION}",
    ]
    assert all(line.startswith(" ") for line in lines[2:])


def test_policy_show_json_lists_departures_and_keeps_every_key(idp: Run, classic_school: str) -> None:
    result = idp("policy", "show", "--json")

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert set(shown) == {"district", classic_school}
    assert set(shown["district"]) == SUMMARY_KEYS | {"departures"}
    assert shown["district"]["departures"] == []
    school = shown[classic_school]
    assert (school["min_length"], school["require_special"]) == (8, True)
    assert [d["rule"] for d in school["departures"]] == ["min_length", "require_special"]
    assert school["departures"][1] == {"rule": "require_special", "reason": COMPOSITION}
