"""Opaque secrets the provider generates: prefixed on the wire, SHA-256 at rest."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_secret(prefix: str) -> str:
    """Return ``prefix_`` followed by 256 random bits, URL-safe."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Compare in constant time, whatever the input."""
    return hmac.compare_digest(secret_hash(secret), stored_hash)


def keyed_hash(key: bytes, value: str) -> str:
    """HMAC-SHA-256 of ``value``: a name that only the holder of ``key`` can link to the value."""
    return hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
