"""Copying the whole key set from one store to the other (``idp keys migrate-store``).

Every record keeps its kid, algorithm, state and times, and every published key its private key,
so tokens in circulation keep verifying and the rotation schedule carries on where it was. The
copy is read back from the destination and compared before anyone switches ``IDP_KEYS_STORE``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from idp.keys.keystore import KeyStore, StoredKeys
from idp.keys.store import KeyRecord, KeySetError


class DestinationNotEmpty(KeySetError):
    def __init__(self, destination: KeyStore) -> None:
        super().__init__(
            f"{destination.describe()} already holds a key set; add --replace to overwrite it "
            "(its keys are lost: tokens they signed stop verifying)"
        )


class CopyDiffers(KeySetError):
    """The destination, read back, does not hold what was copied."""


@dataclass(frozen=True)
class KeySetCopy:
    """What was copied: the records (never the private keys), from where, to where."""

    records: tuple[KeyRecord, ...]
    source: str
    destination: str
    replaced: bool


def copy_key_set(
    source: KeyStore,
    destination: KeyStore,
    *,
    replace: bool = False,
    before_write: Callable[[], None] | None = None,
) -> KeySetCopy:
    """Copy ``source``'s whole set into ``destination`` and check it by reading it back."""
    if source.kind == destination.kind:
        raise KeySetError(f"the source and the destination are both the {source.kind} store")
    keys = source.load()
    replaced = not destination.is_empty()
    if replaced and not replace:
        raise DestinationNotEmpty(destination)
    destination.replace_all(keys, before_write=before_write)
    _verify(keys, destination.load(), destination)
    return KeySetCopy(keys.records, source.describe(), destination.describe(), replaced)


def _verify(copied: StoredKeys, read_back: StoredKeys, destination: KeyStore) -> None:
    if _facts(copied) != _facts(read_back):
        raise CopyDiffers(
            f"{destination.describe()}, read back, does not hold the key set just copied; "
            "keep IDP_KEYS_STORE as it is and look into it"
        )


def _facts(keys: StoredKeys) -> set[tuple[Any, ...]]:
    """Each key's kid, algorithm, state, times and public key: what the copy must keep."""
    facts = set()
    for record in keys.records:
        times: tuple[datetime | None, ...] = (
            record.created_at,
            record.activated_at,
            record.retired_at,
            record.revoked_at,
        )
        key = keys.private.get(record.kid)
        public = None if key is None else key.thumbprint()
        facts.add((record.kid, record.alg, record.state, *times, public))
    return facts
