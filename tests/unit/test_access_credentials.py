"""Access IDs and Access Passwords as drawn: readable, without look-alikes, long enough."""

from __future__ import annotations

import math
import re

from idp.config import Settings
from idp.policy import AccessPolicy
from idp.students.credentials import (
    ACCESS_ID_ALPHABET,
    ACCESS_PASSWORD_ALPHABET,
    new_access_id,
    new_access_password,
)

LOOK_ALIKES = set("0Oo1lIi")


def test_alphabets_hold_no_look_alikes_and_no_repeats():
    for alphabet in (ACCESS_ID_ALPHABET, ACCESS_PASSWORD_ALPHABET):
        assert not LOOK_ALIKES & set(alphabet)
        assert len(set(alphabet)) == len(alphabet)
        assert alphabet.isalnum() and alphabet.isascii()


def test_an_access_id_is_two_groups_of_four_from_its_alphabet():
    pattern = re.compile(f"[{ACCESS_ID_ALPHABET}]{{4}}-[{ACCESS_ID_ALPHABET}]{{4}}")

    for _ in range(200):
        assert pattern.fullmatch(new_access_id())


def test_access_passwords_are_drawn_from_their_alphabet_only():
    drawn = [new_access_password() for _ in range(200)]

    assert all(set(password) <= set(ACCESS_PASSWORD_ALPHABET) for password in drawn)
    # Every symbol turns up: the draw covers the alphabet, not a corner of it.
    assert set("".join(drawn)) == set(ACCESS_PASSWORD_ALPHABET)


def test_access_ids_and_passwords_do_not_repeat():
    # 2,000 draws from 31^8 Access IDs repeat with a chance of about 2 in a million.
    assert len({new_access_id() for _ in range(2000)}) == 2000
    assert len({new_access_password() for _ in range(2000)}) == 2000


def test_a_password_resists_ten_years_of_guessing_every_student_under_the_default_throttle():
    per_id = AccessPolicy.from_settings(Settings()).per_access_id  # 5 wrong, then 900 s of pause
    guesses_per_year = per_id.limit * (365 * 86_400 / per_id.lock.total_seconds())
    students = 100_000
    bits = len(new_access_password()) * math.log2(len(ACCESS_PASSWORD_ALPHABET))

    chance = students * guesses_per_year * 10 / 2**bits

    assert bits > 59
    assert chance < 1e-6
