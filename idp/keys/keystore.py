"""What every key store does: the interface the ring, rotation and ``idp keys`` work through.

Two stores implement it: the files in ``keys/`` (``idp.keys.files.FileKeyStore``, the embedded
default) and the database (``idp.keys.database.DatabaseKeyStore``, for instances that share no
disk). Rotation rules (``idp.keys.rotation``) change a ``KeyDraft``; the store reads the set as it
is now under its lock, hands the draft over, checks the result and writes it in one atomic step.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from idp.clock import Clock
from idp.keys.store import (
    SUPPORTED_ALGORITHMS,
    KeyRecord,
    KeySetError,
    SigningKey,
    check_states,
    new_signing_key,
)


class KeyStoreUnavailable(KeySetError):
    """The store cannot be reached or is not set up yet (a database not migrated or not answering)."""


@dataclass(frozen=True)
class KeyEvent:
    """One change, named as its audit event (``key.rotated``, ``key.pruned``…)."""

    name: str
    kid: str
    alg: str
    details: Mapping[str, str] = field(default_factory=dict)


# Called with a change's events before it is written: a recorder that fails stops the change.
Recorder = Callable[[tuple[KeyEvent, ...]], None]


@dataclass(frozen=True)
class StoredKeys:
    """The key set as one read found it: its records, the private keys of the published ones,
    and the stamp that tells a later check whether anything changed since."""

    records: tuple[KeyRecord, ...]
    private: Mapping[str, SigningKey]
    stamp: Hashable


class KeyDraft:
    """The key set being changed: the records, the keys made for it, the keys to destroy."""

    def __init__(self, records: Iterable[KeyRecord], *, now: datetime) -> None:
        self.records = list(records)
        self.now = now
        self.events: list[KeyEvent] = []
        self.new_keys: dict[str, SigningKey] = {}
        # Records whose private key is destroyed once the change is written (revoked or pruned).
        self.forgotten: list[KeyRecord] = []
        self.backfilled = False

    @property
    def changed(self) -> bool:
        return bool(self.events or self.new_keys or self.forgotten or self.backfilled)

    def find(self, kid: str) -> KeyRecord | None:
        return next((r for r in self.records if r.kid == kid), None)

    def current(self, alg: str, state: str) -> KeyRecord | None:
        return next((r for r in self.records if r.alg == alg and r.state == state), None)

    def put(self, old: KeyRecord, new: KeyRecord) -> None:
        self.records[self.records.index(old)] = new

    def drop(self, record: KeyRecord) -> None:
        self.records.remove(record)
        self.forgotten.append(record)

    def forget(self, record: KeyRecord) -> None:
        self.forgotten.append(record)

    def generate(self, alg: str) -> KeyRecord:
        """Make a new ``next`` key of ``alg`` and add it to the set."""
        record, key = new_signing_key(alg, now=self.now)
        self.records.append(record)
        self.new_keys[record.kid] = key
        return record

    def event(self, name: str, record: KeyRecord, **details: str) -> None:
        self.events.append(KeyEvent(name, record.kid, record.alg, details))


def first_key_set(draft: KeyDraft, algorithms: Iterable[str] = SUPPORTED_ALGORITHMS) -> None:
    """Fill an empty draft with an active and a next key per algorithm, so the first rotation
    needs no wait."""
    for alg in algorithms:
        active = draft.generate(alg)
        draft.put(active, active.moved_to("active", draft.now))
        draft.generate(alg)


def settle(draft: KeyDraft, where: str, record: Recorder | None, write: Callable[[KeyDraft], None]) -> None:
    """Check a changed draft, record its events, then write it; a failure anywhere writes nothing."""
    check_states(where, draft.records)
    if not draft.changed:
        return
    if record is not None:
        record(tuple(draft.events))
    write(draft)


def check_whole_set(keys: StoredKeys, where: str) -> None:
    """Refuse a whole set that breaks the state rules or lacks a published key's private key."""
    check_states(where, keys.records)
    missing = [r.kid for r in keys.records if r.state != "revoked" and r.kid not in keys.private]
    if missing:
        raise KeySetError(f"{where}: no private key for {', '.join(missing)}")


class KeyStore(Protocol):
    """Where the key set lives; every change is atomic and serialised across processes."""

    kind: str  # "files" or "database", as IDP_KEYS_STORE names it

    def describe(self) -> str:
        """Say where the set is, for messages (``the key folder /srv/keys``)."""
        ...

    def ensure(self, *, clock: Clock, algorithms: Iterable[str] = SUPPORTED_ALGORITHMS) -> None:
        """Give an empty store its first key set, exactly once however many processes start together."""
        ...

    def stamp(self) -> Hashable:
        """Return a cheap token that changes whenever the set does."""
        ...

    def load(self) -> StoredKeys:
        """Read the records and the published keys' private keys, refusing anything incomplete."""
        ...

    def read_records(self) -> tuple[KeyRecord, ...]:
        """Return the records as they are now (no private keys)."""
        ...

    def is_empty(self) -> bool:
        """Say whether the store holds no key set at all."""
        ...

    def change(
        self, apply: Callable[[KeyDraft], None], *, clock: Clock, record: Recorder | None = None
    ) -> KeyDraft:
        """Apply ``apply`` to the set as it is now, under the store's lock, and write the result."""
        ...

    def replace_all(self, keys: StoredKeys, *, before_write: Callable[[], None] | None = None) -> None:
        """Make the store hold exactly ``keys`` (records and private keys), in one atomic change;
        ``before_write`` runs under the lock just before (the audit row), and may stop it."""
        ...
