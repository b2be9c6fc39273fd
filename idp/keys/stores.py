"""Which key store a process uses: ``IDP_KEYS_STORE`` picks the folder or the database."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from idp.config import KEY_STORES, Settings
from idp.db import DbSession
from idp.keys.database import DatabaseKeyStore
from idp.keys.files import FileKeyStore
from idp.keys.keystore import KeyStore
from idp.keys.store import KeySetError

__all__ = ["KEY_STORES", "open_key_store"]


def open_key_store(
    settings: Settings,
    *,
    engine: Engine,
    change_session: Callable[[], DbSession] | None = None,
    kind: str | None = None,
) -> KeyStore:
    """Return the store ``kind`` names (by default the one ``IDP_KEYS_STORE`` does)."""
    kind = kind or settings.keys_store
    if kind == "files":
        return FileKeyStore(settings.keys_dir, passphrase=settings.keys_passphrase)
    if kind == "database":
        if not settings.keys_passphrase:
            # Settings refuse this at start; a store made by hand is refused here as clearly.
            raise KeySetError("IDP_KEYS_STORE=database needs IDP_KEYS_PASSPHRASE to encrypt the keys")
        return DatabaseKeyStore(engine, passphrase=settings.keys_passphrase, change_session=change_session)
    raise KeySetError(f"unknown key store {kind!r}; use one of {', '.join(KEY_STORES)}")
