"""Where a password policy departs from NIST SP 800-63B-4 §3.1.1.2, found without an app."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from idp.accounts.password_policy import DISTRICT_DEFAULT, Departure, DepartureRule, PasswordRules


def rules_of(departures: list[Departure]) -> list[DepartureRule]:
    return [departure.rule for departure in departures]


def test_the_district_default_departs_from_nothing() -> None:
    assert DISTRICT_DEFAULT.departures() == []
    assert PasswordRules().departures() == []


def test_a_history_of_passwords_is_not_a_departure() -> None:
    assert PasswordRules(history_count=5).departures() == []


@pytest.mark.parametrize(
    ("changes", "rule", "reason"),
    [
        ({"min_length": 14}, DepartureRule.MIN_LENGTH, "at least 15 characters when a password is the only"),
        ({"min_length": 8}, DepartureRule.MIN_LENGTH, "only factor"),
        ({"max_length": 63}, DepartureRule.MAX_LENGTH, "at least 64 characters"),
        ({"require_upper_lower": True}, DepartureRule.REQUIRE_UPPER_LOWER, "mixtures of character types"),
        ({"require_letter_number": True}, DepartureRule.REQUIRE_LETTER_NUMBER, "mixtures of character types"),
        ({"require_special": True}, DepartureRule.REQUIRE_SPECIAL, "mixtures of character types"),
        ({"max_age": timedelta(days=90)}, DepartureRule.MAX_AGE, "periodic password changes"),
        ({"block_common": False}, DepartureRule.BLOCK_COMMON, "commonly used, expected or compromised"),
        ({"block_context": False}, DepartureRule.BLOCK_CONTEXT, "context-specific words"),
    ],
)
def test_each_departure_is_found_with_its_reason(
    changes: dict[str, Any], rule: DepartureRule, reason: str
) -> None:
    (departure,) = replace(DISTRICT_DEFAULT, **changes).departures()

    assert departure.rule is rule
    assert reason in departure.reason
    assert departure.reason.startswith("SP 800-63B-4 3.1.1.2 ")


def test_fifteen_characters_is_not_a_departure() -> None:
    assert PasswordRules(min_length=15).departures() == []


def test_a_classic_policy_lists_every_departure_in_the_order_of_the_rules() -> None:
    classic = PasswordRules(
        min_length=8,
        require_upper_lower=True,
        require_letter_number=True,
        require_special=True,
        history_count=5,
        max_age=timedelta(days=90),
        block_common=False,
        block_context=False,
    )

    assert rules_of(classic.departures()) == [
        DepartureRule.MIN_LENGTH,
        DepartureRule.REQUIRE_UPPER_LOWER,
        DepartureRule.REQUIRE_LETTER_NUMBER,
        DepartureRule.REQUIRE_SPECIAL,
        DepartureRule.MAX_AGE,
        DepartureRule.BLOCK_COMMON,
        DepartureRule.BLOCK_CONTEXT,
    ]


def test_rules_are_named_as_password_rules_names_its_fields() -> None:
    fields = set(PasswordRules.__dataclass_fields__)

    assert {str(rule) for rule in DepartureRule} <= fields
