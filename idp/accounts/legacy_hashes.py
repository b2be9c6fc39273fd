"""Password hashes imported from an old portal: one verifier per scheme, used once and then upgraded.

An imported account keeps its old hash (``Account.password_scheme`` names the scheme, and
``Account.legacy_salt`` holds the salt of a salted digest) until its first successful sign-in,
which re-hashes the password with argon2id and deletes the old hash (DESIGN, "Secrets at rest").
Every comparison is constant-time. Each scheme also says whether an imported value is well formed,
and refuses parameters so costly that one sign-in would tie up the machine.

The names are the issue's; ``HASH_TYPE_CODES`` maps an SIS's numeric codes to them
(docs/operations/legacy-accounts.md has the table).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import bcrypt
from argon2 import PasswordHasher as Argon2Hasher
from argon2 import extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# The provider's own scheme (idp.accounts.passwords); every other value of ``password_scheme`` is legacy.
MODERN_SCHEME = "argon2id"
PLAINTEXT = "plaintext"
# Seeded by a district's "reset" query (seed 002: CHANGE PWA PW TO "welcome" HT TO -1): whoever signs
# in with one of these must choose a password of their own first.
DEFAULT_PASSWORDS = frozenset({"welcome", "changeme"})

# bcrypt reads at most 72 bytes; the old portal's library cut longer passwords there, silently.
BCRYPT_MAX_BYTES = 72
# Costs beyond these would make one sign-in take seconds or hold too much memory: refused at import.
BCRYPT_MAX_ROUNDS = 16
PBKDF2_MAX_ITERATIONS = 3_000_000
ARGON2_MAX_MEMORY_KIB = 262_144
ARGON2_MAX_TIME_COST = 16
ARGON2_MAX_PARALLELISM = 16

_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
_HEX = re.compile(r"[0-9a-fA-F]+")
# Verifies any PHC string; its own parameters are the string's, not these defaults.
_ARGON2 = Argon2Hasher()


class UnknownHashType(ValueError):
    """A ``hash_type`` that is neither a scheme's name nor a code of ``HASH_TYPE_CODES``."""


@dataclass(frozen=True)
class Scheme:
    """How one legacy scheme verifies a password, and what makes an imported value well formed."""

    name: str
    # (stored hash, salt or None, password typed) -> whether it matches
    verify: Callable[[str, str | None, str], bool]
    # (stored hash) -> what is wrong with it, or None
    problem: Callable[[str], str | None]
    # Whether the salt lives in its own column (salted digests) rather than in the hash string.
    salted: bool = False


def _verify_bcrypt(stored: str, salt: str | None, password: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode()[:BCRYPT_MAX_BYTES], stored.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        # ValueError: a malformed hash; UnicodeEncodeError: a lone surrogate in the password.
        return False


def _bcrypt_problem(stored: str) -> str | None:
    match = _BCRYPT.fullmatch(stored)
    if match is None:
        return "not a bcrypt hash ($2a$, $2b$ or $2y$, a cost and 53 characters)"
    if not 4 <= int(match.group(1)) <= BCRYPT_MAX_ROUNDS:
        return f"bcrypt cost {match.group(1)} is outside 04 to {BCRYPT_MAX_ROUNDS}"
    return None


def _pbkdf2_parts(stored: str) -> tuple[int, str, bytes] | None:
    """Django's ``pbkdf2_sha256$iterations$salt$base64(hash)``, split; None if it is not one."""
    algorithm, _, rest = stored.partition("$")
    iterations, _, rest = rest.partition("$")
    salt, _, encoded = rest.partition("$")
    if algorithm != "pbkdf2_sha256" or not iterations.isascii() or not iterations.isdigit():
        return None
    if not salt or "$" in encoded or not encoded:
        return None
    try:
        expected = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return (int(iterations), salt, expected) if expected else None


def _verify_pbkdf2(stored: str, salt: str | None, password: str) -> bool:
    parts = _pbkdf2_parts(stored)
    if parts is None:
        return False
    iterations, embedded_salt, expected = parts
    if not 1 <= iterations <= PBKDF2_MAX_ITERATIONS:
        return False
    try:
        computed = hashlib.pbkdf2_hmac(
            "sha256", password.encode(), embedded_salt.encode(), iterations, dklen=len(expected)
        )
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(computed, expected)


def _pbkdf2_problem(stored: str) -> str | None:
    parts = _pbkdf2_parts(stored)
    if parts is None:
        return "not a Django pbkdf2_sha256 hash (pbkdf2_sha256$iterations$salt$base64)"
    if not 1 <= parts[0] <= PBKDF2_MAX_ITERATIONS:
        return f"pbkdf2_sha256 iterations must be 1 to {PBKDF2_MAX_ITERATIONS}"
    return None


def _verify_argon2(stored: str, salt: str | None, password: str) -> bool:
    if _argon2_problem(stored) is not None:
        return False
    try:
        # argon2-cffi compares in constant time and takes the variant and costs from the string.
        return _ARGON2.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError, UnicodeEncodeError):
        return False


def _argon2_problem(stored: str) -> str | None:
    try:
        parameters = extract_parameters(stored)
    except (InvalidHashError, ValueError):
        return "not an argon2 PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash)"
    if (
        parameters.memory_cost > ARGON2_MAX_MEMORY_KIB
        or parameters.time_cost > ARGON2_MAX_TIME_COST
        or parameters.parallelism > ARGON2_MAX_PARALLELISM
    ):
        return (
            f"argon2 costs above m={ARGON2_MAX_MEMORY_KIB}, t={ARGON2_MAX_TIME_COST}, "
            f"p={ARGON2_MAX_PARALLELISM} are refused"
        )
    return None


def _salted_digest(algorithm: str, salt_first: bool) -> Scheme:
    """A hex digest of salt+password (``salt_first``) or of password+salt, as SISs store them."""
    digest_chars = hashlib.new(algorithm).digest_size * 2
    order = "prefix" if salt_first else "suffix"

    def verify(stored: str, salt: str | None, password: str) -> bool:
        salt = salt or ""
        try:
            message = (salt + password if salt_first else password + salt).encode()
        except UnicodeEncodeError:
            return False
        computed = hashlib.new(algorithm, message).hexdigest()
        # compare_digest wants ASCII str; a stored value with anything else simply does not match.
        return stored.isascii() and hmac.compare_digest(computed, stored.lower())

    def problem(stored: str) -> str | None:
        if len(stored) != digest_chars or not _HEX.fullmatch(stored):
            return f"not a {algorithm} hex digest ({digest_chars} hexadecimal digits)"
        return None

    return Scheme(f"{algorithm}_salt_{order}", verify, problem, salted=True)


SCHEMES: dict[str, Scheme] = {
    scheme.name: scheme
    for scheme in (
        Scheme("bcrypt", _verify_bcrypt, _bcrypt_problem),
        Scheme("pbkdf2_sha256", _verify_pbkdf2, _pbkdf2_problem),
        Scheme("argon2", _verify_argon2, _argon2_problem),
        _salted_digest("sha1", salt_first=True),
        _salted_digest("sha1", salt_first=False),
        _salted_digest("sha256", salt_first=True),
        _salted_digest("sha256", salt_first=False),
        _salted_digest("md5", salt_first=True),
        _salted_digest("md5", salt_first=False),
    )
}

# An SIS's numeric hash types. Only -1 (plaintext) is the seed's own (002: "HT TO -1"); the others
# are this provider's numbering, documented in docs/operations/legacy-accounts.md. A district whose
# SIS numbers them otherwise writes the names instead, which are always accepted.
HASH_TYPE_CODES: dict[int, str] = {
    -1: PLAINTEXT,
    1: "sha1_salt_prefix",
    2: "sha1_salt_suffix",
    3: "sha256_salt_prefix",
    4: "sha256_salt_suffix",
    5: "md5_salt_prefix",
    6: "md5_salt_suffix",
    7: "bcrypt",
    8: "pbkdf2_sha256",
    9: "argon2",
}

# Where a plaintext password is kept until its first sign-in: never as typed (DESIGN, "Secrets at rest").
PLAINTEXT_STORED_AS = "sha256_salt_prefix"


def hash_type(text: str) -> str:
    """Return the scheme a ``hash_type`` column names, by name or numeric code; raise ``UnknownHashType``."""
    value = text.strip()
    if value.lower() in SCHEMES or value.lower() == PLAINTEXT:
        return value.lower()
    try:
        return HASH_TYPE_CODES[int(value)]
    except (ValueError, KeyError):
        raise UnknownHashType(value) from None


def is_legacy(scheme: str) -> bool:
    return scheme != MODERN_SCHEME


def verify(scheme: str, stored: str, salt: str | None, password: str) -> bool:
    """Return whether ``password`` matches a legacy hash; an unknown scheme matches nothing."""
    found = SCHEMES.get(scheme)
    return found is not None and found.verify(stored, salt, password)


def protect_plaintext(password: str) -> tuple[str, str, str]:
    """Return (scheme, hash, salt) under which an imported plaintext password is stored until its
    first sign-in: a salted SHA-256 with a fresh salt, cheap enough for a whole import."""
    salt = secrets.token_hex(16)
    return PLAINTEXT_STORED_AS, hashlib.sha256((salt + password).encode()).hexdigest(), salt


def is_default_password(password: str) -> bool:
    """Return whether ``password`` is one a district's reset sets ("welcome", "changeme")."""
    return password.casefold() in DEFAULT_PASSWORDS
