"""Password rules without an app or a database: NIST default, classic rules, strictest combination."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from idp.accounts.password_policy import (
    DISTRICT_DEFAULT,
    PasswordRules,
    Violation,
    derives_from_context,
    is_common_password,
)

CLASSIC = PasswordRules(
    min_length=8,
    require_upper_lower=True,
    require_letter_number=True,
    require_special=True,
    history_count=5,
    max_age=timedelta(days=90),
)


def test_district_default_follows_nist_sp_800_63b_4():
    assert DISTRICT_DEFAULT.min_length == 15
    assert DISTRICT_DEFAULT.max_length >= 64
    assert not (
        DISTRICT_DEFAULT.require_upper_lower
        or DISTRICT_DEFAULT.require_letter_number
        or DISTRICT_DEFAULT.require_special
    )
    assert DISTRICT_DEFAULT.max_age is None
    assert DISTRICT_DEFAULT.block_common and DISTRICT_DEFAULT.block_context


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",  # spaces are characters like any other
        "schöne grüne äpfel im korb",
        "ねこがすきなだけでいいのでしょう",  # 16 characters, no Latin letter at all
        "x" * 7 + "-lowercase-only-here",
        "a" * 3 + "b" * 3 + "c" * 3 + "d" * 3 + "e" * 3 + "f",
        "p" + "q" * 254 + "r",  # 256: the longest accepted
    ],
)
def test_default_accepts_long_passwords_without_composition_rules(password):
    assert DISTRICT_DEFAULT.check(password) == []


def test_default_refuses_fourteen_characters():
    assert DISTRICT_DEFAULT.check("fourteen-chars") == [Violation.TOO_SHORT]


def test_default_refuses_257_characters_without_truncating():
    assert DISTRICT_DEFAULT.check("p" + "q" * 256) == [Violation.TOO_LONG]


def test_length_counts_characters_after_nfkc_not_bytes():
    # 15 code points, 45 bytes in UTF-8.
    assert DISTRICT_DEFAULT.check("日本語のパスワードはとても長いね") == []
    # NFKC turns the ligature "ﬃ" (one character) into "ffi" (three).
    assert Violation.TOO_SHORT not in DISTRICT_DEFAULT.check("ﬃ" * 5)


def test_passwords_are_not_trimmed():
    # Fourteen visible characters and a trailing space are fifteen characters.
    assert DISTRICT_DEFAULT.check("fourteen-chars ") == []


@pytest.mark.parametrize(
    "password", ["passwordpassword", "123456789987654321", "1qaz2wsx3edc4rfv", "QWERTY123456789"]
)
def test_common_passwords_from_zxcvbns_list_are_refused(password):
    assert Violation.COMMON in DISTRICT_DEFAULT.check(password)


@pytest.mark.parametrize(
    "password", ["Password1!", "monkey2024!!", "aaaaaaaaaaaaaaaaa", "abcabcabcabcabcabc"]
)
def test_common_words_with_digits_symbols_or_repetition_are_common(password):
    assert is_common_password(password)


def test_an_ordinary_passphrase_is_not_common():
    assert not is_common_password("lantern-orchard-velvet-93")


@pytest.mark.parametrize("password", ["dana.rivera.2026", "DanaRivera123456", "Springfield2026!!!"])
def test_username_and_district_name_with_little_added_are_refused(password):
    context = ["dana.rivera", "Springfield Public Schools"]
    assert derives_from_context(password, context)
    assert Violation.CONTEXT in DISTRICT_DEFAULT.check(password, context=context)


def test_a_long_passphrase_that_mentions_a_context_word_is_accepted():
    assert not derives_from_context("dana plants tulips beside the harbour", ["dana.rivera"])


def test_short_context_words_are_ignored():
    assert not derives_from_context("pat-the-cat-sat-on-the-mat", ["Pat", "Li"])


@pytest.mark.parametrize(
    ("password", "violations"),
    [
        ("alllowercase1!", [Violation.UPPER_LOWER]),
        ("NoDigitsHere!!", [Violation.LETTER_NUMBER]),
        ("NoSpecial1234x", [Violation.SPECIAL]),
        ("Ab1!", [Violation.TOO_SHORT]),
        ("abcdefgh", [Violation.UPPER_LOWER, Violation.LETTER_NUMBER, Violation.SPECIAL]),
        ("Ab1!Ab1!zz", []),
    ],
)
def test_classic_rules_report_every_violation_at_once(password, violations):
    assert CLASSIC.check(password, context=()) == [v for v in violations]


def test_a_space_counts_as_a_special_character():
    assert Violation.SPECIAL not in CLASSIC.check("Ab1 cdefgh")


def test_strictest_takes_each_rule_from_the_strictest_policy():
    lenient_long = PasswordRules(min_length=20, history_count=2)
    combined = PasswordRules.strictest([lenient_long, CLASSIC])

    assert combined == PasswordRules(
        min_length=20,
        require_upper_lower=True,
        require_letter_number=True,
        require_special=True,
        history_count=5,
        max_age=timedelta(days=90),
    )


def test_strictest_keeps_the_shortest_maximum_age():
    a = PasswordRules(max_age=timedelta(days=90))
    b = PasswordRules(max_age=timedelta(days=30))
    c = PasswordRules()

    assert PasswordRules.strictest([a, c, b]).max_age == timedelta(days=30)  # type: ignore[union-attr]


def test_no_policies_combine_to_none():
    assert PasswordRules.strictest([]) is None


def test_default_passwords_never_expire():
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)

    assert not DISTRICT_DEFAULT.has_expired(long_ago, datetime(2026, 1, 1, tzinfo=UTC))


def test_a_password_expires_at_its_maximum_age():
    changed = datetime(2026, 1, 1, tzinfo=UTC)

    assert not CLASSIC.has_expired(changed, changed + timedelta(days=89, hours=23))
    assert CLASSIC.has_expired(changed, changed + timedelta(days=90))
