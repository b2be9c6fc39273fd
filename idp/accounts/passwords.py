"""argon2id hashing of people-chosen secrets, with rehash when parameters change."""

from __future__ import annotations

import secrets
import unicodedata
from functools import cache
from pathlib import Path

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from idp.policy import HashingPolicy

MAX_PASSWORD_LENGTH = 256
WORDLIST = Path(__file__).with_name("data") / "eff_short_wordlist.txt"


@cache
def _words() -> tuple[str, ...]:
    # Short, common and unmistakable words (the EFF made the list for passphrases read by people).
    lines = WORDLIST.read_text(encoding="utf-8").splitlines()
    return tuple(line for line in lines if line.isalpha())


def passphrase(words: int) -> str:
    """Return ``words`` random capitalised words and a number, joined by dashes: "Acorn-Swept-Tidy-Oak-47".

    About 10.3 bits a word and 6.6 for the number. Upper and lower case, a digit and a symbol,
    so that it also passes a school's classic composition rules.
    """
    chosen = [secrets.choice(_words()).capitalize() for _ in range(words)]
    return "-".join([*chosen, str(secrets.randbelow(90) + 10)])


def normalise_password(password: str) -> str:
    """NFKC, as NIST SP 800-63B-4 asks; never case-folded, trimmed or truncated."""
    return unicodedata.normalize("NFKC", password)


class PasswordHasher:
    def __init__(self, policy: HashingPolicy) -> None:
        self.policy = policy
        self._argon2 = Argon2Hasher(
            time_cost=policy.time_cost,
            memory_cost=policy.memory_kib,
            parallelism=policy.parallelism,
            type=Type.ID,
        )
        # Verified against when the username is unknown, so both cases cost one argon2 run.
        self._dummy_hash = self._argon2.hash("not a password: equal-cost placeholder")

    def hash(self, password: str) -> str:
        return self._argon2.hash(normalise_password(password))

    def verify(self, stored_hash: str, password: str) -> bool:
        """Return whether ``password`` matches; malformed hashes simply do not match."""
        try:
            return self._argon2.verify(stored_hash, normalise_password(password))
        except (VerifyMismatchError, VerificationError, InvalidHashError, UnicodeEncodeError):
            # UnicodeEncodeError: a non-ASCII stored hash, or a password with a lone surrogate.
            return False

    def verify_dummy(self, password: str) -> None:
        """Spend what a real verify spends, for a username that does not exist."""
        self.verify(self._dummy_hash, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        try:
            return self._argon2.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True
