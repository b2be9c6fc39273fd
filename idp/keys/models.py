"""The key set in the database (``IDP_KEYS_STORE=database``): one row for the set, one per key."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, utc_time, utc_time_or_none

# The one row of ``key_set``: its id is fixed, so that every change can lock the same row.
KEY_SET_ID = 1


class KeySetRow(Base):
    """The set's generation (every change adds one, so a check reads one small row) and its seal."""

    __tablename__ = "key_set"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(Integer, nullable=False)
    changed_at: Mapped[utc_time]
    # Scrypt's salt and cost for the key-encryption key (idp.keys.cipher).
    kdf_salt: Mapped[bytes] = mapped_column(LargeBinary(64), nullable=False)
    kdf_n: Mapped[int] = mapped_column(Integer, nullable=False)
    kdf_r: Mapped[int] = mapped_column(Integer, nullable=False)
    kdf_p: Mapped[int] = mapped_column(Integer, nullable=False)
    # A known text sealed with that key: a wrong passphrase is told apart from an altered key row.
    check_nonce: Mapped[bytes] = mapped_column(LargeBinary(12), nullable=False)
    check_ciphertext: Mapped[bytes] = mapped_column(LargeBinary(64), nullable=False)


class SigningKeyRow(Base):
    """One key's record as the manifest holds it, and its private key sealed (none once revoked)."""

    __tablename__ = "signing_key"
    __table_args__ = (
        CheckConstraint("state IN ('next', 'active', 'retired', 'revoked')", name="state"),
        CheckConstraint("alg IN ('RS256', 'ES256')", name="alg"),
    )

    kid: Mapped[str] = mapped_column(String(128), primary_key=True)
    alg: Mapped[str] = mapped_column(String(8), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[utc_time]
    activated_at: Mapped[utc_time_or_none]
    retired_at: Mapped[utc_time_or_none]
    revoked_at: Mapped[utc_time_or_none]
    # AES-GCM over the unencrypted PKCS#8 PEM, bound to kid and alg (idp.keys.cipher).
    nonce: Mapped[bytes | None] = mapped_column(LargeBinary(12), nullable=True)
    private_key: Mapped[bytes | None] = mapped_column(LargeBinary(), nullable=True)
