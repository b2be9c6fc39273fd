"""The staff second factor: TOTP codes (RFC 6238) and single-use backup codes; no HTTP.

The TOTP secret is kept encrypted (AES-GCM) under a key derived from the app's secret key, so a
copy of the database alone does not let anyone make codes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from base64 import urlsafe_b64decode, urlsafe_b64encode
from datetime import datetime

import pyotp
import segno
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

STEP_SECONDS = 30
DIGITS = 6
# RFC 6238 5.2: one step either side forgives a clock a little off and a code typed slowly.
VALID_WINDOW = 1

BACKUP_CODE_COUNT = 10
BACKUP_CODE_LENGTH = 10
# No 0/O, 1/I/L, 2/Z, 5/S, 8/B: a code read from paper is typed right.
BACKUP_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"

_NONCE_BYTES = 12


class TotpCipher:
    """Encrypt and decrypt TOTP secrets under a key derived from the app's secret key."""

    def __init__(self, secret_key: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"idp staff totp").derive(
            secret_key.encode()
        )
        self._aead = AESGCM(key)

    def encrypt(self, secret: str) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), b"totp")
        return urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, stored: str) -> str:
        raw = urlsafe_b64decode(stored.encode())
        return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], b"totp").decode()


def new_totp_secret() -> str:
    """Return a new base32 secret of 160 bits (RFC 4226 4 recommends at least that)."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, *, username: str, issuer: str) -> str:
    """Return the ``otpauth://`` URI an authenticator app reads."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=username, issuer_name=issuer
    )


def qr_svg(uri: str) -> str:
    """Return the QR code of ``uri`` as inline SVG markup (no script, no external image)."""
    svg: str = segno.make(uri, error="m").svg_inline(scale=4, title="QR code", dark="#000", light="#fff")
    return svg


def time_step(at: datetime) -> int:
    return int(at.timestamp()) // STEP_SECONDS


def matching_step(secret: str, code: str, at: datetime) -> int | None:
    """Return the time step ``code`` belongs to within the window around ``at``, if any."""
    code = "".join(code.split())
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    now_step = time_step(at)
    for step in range(now_step - VALID_WINDOW, now_step + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_backup_codes() -> list[str]:
    """Return fresh backup codes, shown once as ``ABCDE-FGHJK``."""
    codes = []
    for _ in range(BACKUP_CODE_COUNT):
        raw = "".join(secrets.choice(BACKUP_ALPHABET) for _ in range(BACKUP_CODE_LENGTH))
        half = BACKUP_CODE_LENGTH // 2
        codes.append(f"{raw[:half]}-{raw[half:]}")
    return codes


def normalise_backup_code(code: str) -> str:
    """Return ``code`` as stored: dashes and spaces dropped, upper case."""
    return "".join(ch for ch in code.upper() if ch not in " -\t")


def looks_like_backup_code(code: str) -> bool:
    normal = normalise_backup_code(code)
    return len(normal) == BACKUP_CODE_LENGTH and all(ch in BACKUP_ALPHABET for ch in normal)


def backup_code_hash(code: str) -> str:
    return hashlib.sha256(normalise_backup_code(code).encode()).hexdigest()
