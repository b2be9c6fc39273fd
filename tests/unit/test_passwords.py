"""argon2id hashing of people-chosen secrets."""

from __future__ import annotations

import pytest

from idp.accounts.passwords import PasswordHasher
from idp.policy import HashingPolicy

CHEAP = HashingPolicy(time_cost=1, memory_kib=256, parallelism=1)
STRONGER = HashingPolicy(time_cost=2, memory_kib=512, parallelism=1)


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(CHEAP)


def test_right_password_verifies(hasher):
    stored = hasher.hash("correct horse battery staple")

    assert stored.startswith("$argon2id$")
    assert hasher.verify(stored, "correct horse battery staple")


@pytest.mark.parametrize(
    "attempt",
    ["correct horse battery stapl", "Correct horse battery staple", " correct horse battery staple", ""],
)
def test_wrong_password_does_not_verify(hasher, attempt):
    # Never case-folded, trimmed or truncated.
    assert not hasher.verify(hasher.hash("correct horse battery staple"), attempt)


@pytest.mark.parametrize(
    ("chosen", "typed"),
    [
        ("caf\u00e9-au-lait", "cafe\u0301-au-lait"),  # composed and decomposed é
        ("\ufb01sh and chips", "fish and chips"),  # the fi ligature
        ("ＰＡＳＳ ｗｏｒｄ", "PASS word"),  # fullwidth forms
    ],
)
def test_nfkc_equivalent_passwords_verify(hasher, chosen, typed):
    assert hasher.verify(hasher.hash(chosen), typed)
    assert hasher.verify(hasher.hash(typed), chosen)


def test_hash_made_with_other_parameters_needs_rehash(hasher):
    stronger = PasswordHasher(STRONGER)
    old = hasher.hash("pw")

    assert stronger.needs_rehash(old)
    assert not hasher.needs_rehash(old)
    assert hasher.needs_rehash(stronger.hash("pw"))
    assert stronger.verify(old, "pw")  # still checked against its own parameters


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "not a hash",
        "$argon2id$v=19$m=256,t=1,p=1$c2FsdA",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",  # bcrypt
        "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$é",  # non-ASCII garbage
    ],
)
def test_malformed_hash_fails_to_verify_without_raising(hasher, stored):
    assert hasher.verify(stored, "pw") is False
    assert hasher.needs_rehash(stored)


def test_truncated_hash_fails_to_verify(hasher):
    assert hasher.verify(hasher.hash("pw")[:-6], "pw") is False


@pytest.mark.parametrize("password", ["pw", "", "x" * 1000, "\x00", "\ud800"])
def test_verify_dummy_does_not_raise(hasher, password):
    assert hasher.verify_dummy(password) is None


def test_password_that_cannot_be_encoded_does_not_verify(hasher):
    # A lone surrogate can arrive through JSON; it matches nothing instead of raising.
    assert hasher.verify(hasher.hash("pw"), "pw\ud800") is False
