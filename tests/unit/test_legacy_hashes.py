"""Each legacy scheme verifies hashes made by that format's own reference tool or library.

bcrypt: the ``bcrypt`` package; Django's PBKDF2: Django's own hasher; argon2: argon2-cffi with
other parameters than the provider's; the salted digests: ``openssl dgst``. ``reference_hash``
is shared with the import and sign-in tests.
"""

from __future__ import annotations

import subprocess

import argon2
import bcrypt
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from idp.accounts import legacy_hashes
from idp.accounts.legacy_hashes import SCHEMES, UnknownHashType, hash_type, verify

PASSWORD = "Tr0ub4dor&3 ünïcödé"
SALT = "x7Gq!pL2"
SALTED = [name for name, scheme in SCHEMES.items() if scheme.salted]


def openssl_digest(algorithm: str, message: str) -> str:
    """The hex digest ``openssl dgst`` prints for ``message`` (UTF-8), as an SIS's export holds it."""
    out = subprocess.run(
        ["openssl", "dgst", f"-{algorithm}", "-r"],
        input=message.encode(),
        capture_output=True,
        check=True,
    ).stdout.decode()
    return out.split()[0]


def reference_hash(scheme: str, password: str, salt: str = SALT) -> tuple[str, str]:
    """(hash, salt column) for ``password`` under ``scheme``, made by the format's reference tool."""
    if scheme == "bcrypt":
        # Cost 4, the lowest: the tests stay fast, and the verifier reads the cost from the hash.
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode(), ""
    if scheme == "pbkdf2_sha256":
        return PBKDF2PasswordHasher().encode(password, "dJ4ngoSaltValue1", iterations=1000), ""
    if scheme == "argon2":
        # argon2i, 2 passes, 1 MiB, 2 lanes: none of them the provider's argon2id parameters.
        hasher = argon2.PasswordHasher(time_cost=2, memory_cost=1024, parallelism=2, type=argon2.Type.I)
        return hasher.hash(password), ""
    if scheme == "plaintext":
        return password, ""
    algorithm, _, order = scheme.partition("_salt_")
    message = salt + password if order == "prefix" else password + salt
    return openssl_digest(algorithm, message), salt


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_a_reference_hash_verifies_with_its_password_only(scheme: str) -> None:
    stored, salt = reference_hash(scheme, PASSWORD)

    assert SCHEMES[scheme].problem(stored) is None
    assert verify(scheme, stored, salt or None, PASSWORD)
    assert not verify(scheme, stored, salt or None, PASSWORD + "x")
    assert not verify(scheme, stored, salt or None, "")


@pytest.mark.parametrize("scheme", SALTED)
def test_a_salted_digest_needs_its_salt_on_its_side(scheme: str) -> None:
    stored, salt = reference_hash(scheme, PASSWORD)
    other_order = (
        scheme.replace("prefix", "suffix") if "prefix" in scheme else scheme.replace("suffix", "prefix")
    )

    assert not verify(scheme, stored, None, PASSWORD)
    assert not verify(other_order, stored, salt, PASSWORD)
    assert verify(scheme, stored.upper(), salt, PASSWORD)  # some exports write hex in capitals


@pytest.mark.parametrize("prefix", ["$2a$", "$2b$", "$2y$"])
def test_bcrypt_accepts_each_prefix(prefix: str) -> None:
    stored = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4, prefix=b"2b")).decode()
    same = prefix + stored[4:]

    assert verify("bcrypt", same, None, "secret")


def test_bcrypt_reads_72_bytes_as_the_old_portal_did() -> None:
    long = "a" * 72
    stored = bcrypt.hashpw(long.encode(), bcrypt.gensalt(rounds=4)).decode()

    # The old library ignored what came after the 72nd byte; the bcrypt package refuses it instead.
    assert verify("bcrypt", stored, None, long + "anything after")
    assert not verify("bcrypt", stored, None, "a" * 71)


def test_argon2_with_other_variants_and_costs() -> None:
    for variant in (argon2.Type.ID, argon2.Type.D):
        stored = argon2.PasswordHasher(time_cost=1, memory_cost=512, parallelism=3, type=variant).hash("pw")
        assert verify("argon2", stored, None, "pw")
        assert not verify("argon2", stored, None, "pW")


@pytest.mark.parametrize(
    ("scheme", "stored", "fragment"),
    [
        ("bcrypt", "$2x$04$" + "a" * 53, "not a bcrypt hash"),
        ("bcrypt", "$2b$31$" + "a" * 53, "cost 31"),
        ("pbkdf2_sha256", "pbkdf2_sha256$1000$salt", "not a Django"),
        ("pbkdf2_sha256", "pbkdf2_sha256$99999999$salt$aGFzaA==", "iterations"),
        ("pbkdf2_sha256", "pbkdf2_sha256$1000$salt$not base64!", "not a Django"),
        ("argon2", "$argon2id$v=19$m=65536", "not an argon2"),
        ("argon2", "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "costs above"),
        ("sha1_salt_prefix", "abc", "40 hexadecimal"),
        ("md5_salt_suffix", "z" * 32, "32 hexadecimal"),
        ("sha256_salt_prefix", "a" * 40, "64 hexadecimal"),
    ],
)
def test_a_malformed_or_too_costly_hash_is_named_and_matches_nothing(
    scheme: str, stored: str, fragment: str
) -> None:
    problem = SCHEMES[scheme].problem(stored)

    assert problem is not None and fragment in problem
    assert not verify(scheme, stored, "", "anything")


def test_hash_types_by_name_and_by_the_documented_codes() -> None:
    assert hash_type("-1") == "plaintext"  # the seed's HT = -1
    assert hash_type(" 7 ") == "bcrypt"
    assert hash_type("PBKDF2_SHA256") == "pbkdf2_sha256"
    assert {hash_type(str(code)) for code in legacy_hashes.HASH_TYPE_CODES} == {*SCHEMES, "plaintext"}
    for unknown in ("0", "md4", "", "10", "1.5"):
        with pytest.raises(UnknownHashType):
            hash_type(unknown)


def test_a_plaintext_password_is_stored_as_a_salted_digest_with_a_fresh_salt() -> None:
    first = legacy_hashes.protect_plaintext("welcome")
    second = legacy_hashes.protect_plaintext("welcome")

    assert first[1] != second[1] and "welcome" not in first[1]
    assert verify(first[0], first[1], first[2], "welcome")


def test_unknown_schemes_and_odd_passwords_match_nothing() -> None:
    stored, salt = reference_hash("md5_salt_prefix", PASSWORD)

    assert not verify("md4_salt_prefix", stored, salt, PASSWORD)
    assert not verify("md5_salt_prefix", stored, salt, "\ud800")  # a lone surrogate
    assert legacy_hashes.is_default_password("Welcome") and legacy_hashes.is_default_password("changeme")
    assert not legacy_hashes.is_default_password("welcome1")
