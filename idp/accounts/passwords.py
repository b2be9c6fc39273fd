"""argon2id hashing of people-chosen secrets, with rehash when parameters change."""

from __future__ import annotations

import secrets
import unicodedata

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from idp.policy import HashingPolicy

MAX_PASSWORD_LENGTH = 256
# Letters and digits that cannot be mistaken for one another when read aloud or copied by hand.
_TEMPORARY_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789"


def temporary_password() -> str:
    """Return a random password for staff to hand over: four groups of four, about 91 bits.

    It has upper and lower case, a digit and a symbol, so that it passes a school's classic rules too.
    """
    while True:
        groups = ["".join(secrets.choice(_TEMPORARY_ALPHABET) for _ in range(4)) for _ in range(4)]
        password = "-".join(groups)
        if (
            any(c.isupper() for c in password)
            and any(c.islower() for c in password)
            and any(c.isdigit() for c in password)
        ):
            return password


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
