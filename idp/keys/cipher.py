"""Private signing keys sealed for the database: AES-256-GCM under a key derived from the passphrase.

The key-encryption key is Scrypt(``IDP_KEYS_PASSPHRASE``, the key set's random salt), derived
once per process and salt. Each private key is sealed with a fresh 96-bit nonce (NIST SP 800-38D
8.2.2) and associated data naming its ``kid`` and ``alg``, so a ciphertext moved to another row,
or a row renamed, fails authentication instead of loading as another key. A check value sealed
the same way tells a wrong passphrase apart from an altered row.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from idp.keys.store import KeySetError

NONCE_BYTES = 12
SALT_BYTES = 16
CHECK_PLAINTEXT = b"idp signing key set"
CHECK_ASSOCIATED_DATA = b"idp:key-set-check:v1"


@dataclass(frozen=True)
class ScryptCost:
    """Scrypt's work factors, stored beside the salt so that a later default cannot lock a set out.

    The default is one of OWASP's Password Storage Cheat Sheet settings: N=2^15, r=8, p=3
    (32 MiB, about as much work as its first choice, N=2^17 r=8 p=1, with a quarter of the memory).
    """

    n: int = 2**15
    r: int = 8
    p: int = 3


@dataclass(frozen=True)
class KeySetSeal:
    """What a key set stores to find its key-encryption key again: the salt and the Scrypt cost."""

    salt: bytes
    cost: ScryptCost

    @classmethod
    def new(cls, cost: ScryptCost | None = None) -> KeySetSeal:
        return cls(os.urandom(SALT_BYTES), cost or ScryptCost())


class WrongPassphrase(KeySetError):
    def __init__(self) -> None:
        super().__init__(
            "IDP_KEYS_PASSPHRASE does not open the key set in the database; set the passphrase "
            "the set was made with (kept apart from the database backups)"
        )


class AlteredKey(KeySetError):
    def __init__(self, kid: str) -> None:
        super().__init__(
            f"the private key of {kid} in the database does not decrypt although the passphrase is "
            "right: its row was altered or swapped with another; restore the key set from backup"
        )
        self.kid = kid


def key_associated_data(kid: str, alg: str) -> bytes:
    """Bind a sealed private key to its row: the kid and the algorithm it signs with."""
    return json.dumps(["idp:signing-key:v1", kid, alg]).encode()


class KeyCipher:
    """Seal and open private keys with the key derived from ``passphrase`` and a set's salt."""

    def __init__(self, passphrase: str) -> None:
        if not passphrase:
            raise KeySetError("the database key store needs IDP_KEYS_PASSPHRASE to encrypt the keys")
        self._passphrase = passphrase.encode()
        self._derived: dict[KeySetSeal, AESGCM] = {}
        self._lock = threading.Lock()

    def _aead(self, seal: KeySetSeal) -> AESGCM:
        # Scrypt is deliberately slow: derive once per salt, not once per key or per reload.
        with self._lock:
            aead = self._derived.get(seal)
            if aead is None:
                kdf = Scrypt(salt=seal.salt, length=32, n=seal.cost.n, r=seal.cost.r, p=seal.cost.p)
                aead = self._derived[seal] = AESGCM(kdf.derive(self._passphrase))
            return aead

    def seal(self, seal: KeySetSeal, plaintext: bytes, associated_data: bytes) -> tuple[bytes, bytes]:
        """Return ``(nonce, ciphertext)``; the ciphertext carries GCM's 16-byte tag."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce, self._aead(seal).encrypt(nonce, plaintext, associated_data)

    def open(self, seal: KeySetSeal, nonce: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
        """Return the plaintext; raise ``InvalidTag`` if anything differs from what was sealed."""
        return self._aead(seal).decrypt(nonce, ciphertext, associated_data)

    def check_value(self, seal: KeySetSeal) -> tuple[bytes, bytes]:
        return self.seal(seal, CHECK_PLAINTEXT, CHECK_ASSOCIATED_DATA)

    def verify_check_value(self, seal: KeySetSeal, nonce: bytes, ciphertext: bytes) -> None:
        """Raise ``WrongPassphrase`` unless this passphrase sealed the set's check value."""
        try:
            opened = self.open(seal, nonce, ciphertext, CHECK_ASSOCIATED_DATA)
        except InvalidTag:
            raise WrongPassphrase() from None
        if opened != CHECK_PLAINTEXT:
            raise WrongPassphrase()
