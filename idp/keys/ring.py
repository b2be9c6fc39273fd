"""The key ring: the loaded key set, signing with the active key, verifying, and the JWKS.

Every process loads the set at start (making the first one, once, in an empty store) and checks
the store's stamp (the manifest's, or the database's generation) every ``IDP_KEYS_CHECK_SECONDS``,
so a rotation made by ``idp keys`` anywhere is in use everywhere within moments. The ring knows
its store only through ``idp.keys.keystore.KeyStore``; the composition root picks it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import UnsupportedAlgorithmError
from joserfc.jwk import KeySet

from idp.clock import Clock
from idp.keys.files import FileKeyStore, load_folder
from idp.keys.keystore import KeyStore, KeyStoreUnavailable, StoredKeys
from idp.keys.store import PUBLISHED_STATES, SUPPORTED_ALGORITHMS, KeyRecord, KeySetError, SigningKey

log = logging.getLogger(__name__)


class UnknownSigningKey(LookupError):
    pass


@dataclass(frozen=True)
class LoadedKeys:
    records: tuple[KeyRecord, ...]
    private: Mapping[str, SigningKey]
    stamp: Hashable
    # Built once per key set change: every verify and every /jwks.json reuses them.
    key_set: KeySet = field(init=False)
    jwks_json: bytes = field(init=False)
    jwks_etag: str = field(init=False)

    def __post_init__(self) -> None:
        published = self.published()
        document = {"keys": [key.as_dict(private=False) for key in published]}
        body = json.dumps(document, separators=(",", ":")).encode()
        object.__setattr__(self, "key_set", KeySet(list[Any](published)))
        object.__setattr__(self, "jwks_json", body)
        object.__setattr__(self, "jwks_etag", hashlib.sha256(body).hexdigest()[:32])

    @classmethod
    def of(cls, stored: StoredKeys) -> LoadedKeys:
        return cls(stored.records, stored.private, stored.stamp)

    def active(self, alg: str) -> tuple[KeyRecord, SigningKey]:
        for record in self.records:
            if record.alg == alg and record.state == "active":
                return record, self.private[record.kid]
        raise UnknownSigningKey(f"no active {alg} key in the key set")

    def published(self) -> list[SigningKey]:
        return [self.private[r.kid] for r in self.records if r.state in PUBLISHED_STATES]


class KeyRing:
    """The one interface to signing keys; every other module signs and verifies through it."""

    def __init__(
        self,
        store: KeyStore | Path,
        *,
        clock: Clock,
        passphrase: str | None = None,
        check_seconds: float = 2.0,
        algorithms: Iterable[str] = SUPPORTED_ALGORITHMS,
    ) -> None:
        """Load the set from ``store`` (a folder means the files store, with ``passphrase``).

        A store that cannot be reached yet (a database not migrated: ``idp db upgrade`` itself
        builds the app) is opened at the first use instead; anything else wrong stops the start.
        """
        self.store = FileKeyStore(store, passphrase=passphrase) if isinstance(store, Path) else store
        self.clock = clock
        self.check_seconds = check_seconds
        self.algorithms = tuple(algorithms)
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._loaded: LoadedKeys | None = None
        try:
            self._loaded = self._open()
        except KeyStoreUnavailable as error:
            log.warning("the signing keys are not loaded yet (%s); trying again at first use", error)

    def _open(self) -> LoadedKeys:
        self.store.ensure(clock=self.clock, algorithms=self.algorithms)
        return LoadedKeys.of(self.store.load())

    def _current(self) -> LoadedKeys:
        # A cheap read of the store's stamp every few seconds picks up a rotation done elsewhere.
        now = time.monotonic()
        loaded = self._loaded
        if loaded is None or now - self._checked_at >= self.check_seconds:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._open()  # a store still unavailable raises to the caller
                    self._checked_at = now
                elif now - self._checked_at >= self.check_seconds:
                    self._reload_if_changed(self._loaded)
                    self._checked_at = now
                loaded = self._loaded
        return loaded

    def _reload_if_changed(self, current: LoadedKeys) -> None:
        try:
            if self.store.stamp() == current.stamp:
                return
            loaded = LoadedKeys.of(self.store.load())
        except KeySetError:
            # A serving process keeps the set it has rather than fail every request;
            # it tries again at the next check, and the log says why.
            log.exception(
                "%s cannot be loaded; still serving the previous one",
                self.store.describe(),
            )
            return
        self._loaded = loaded
        log.info(
            "key set reloaded: %s",
            ", ".join(f"{r.kid} {r.state}" for r in loaded.records if r.state in PUBLISHED_STATES),
        )

    def reload(self) -> None:
        """Read the store now instead of at the next check (after a change made by this process)."""
        with self._lock:
            if self._loaded is None:
                self._loaded = self._open()
            else:
                self._reload_if_changed(self._loaded)
            self._checked_at = time.monotonic()

    def check_store(self) -> None:
        """Raise ``KeySetError`` unless the store still reads (a process that cannot read it would
        miss a rotation, and could not start again)."""
        self.store.read_records()

    def records(self) -> tuple[KeyRecord, ...]:
        return self._current().records

    def signing_key_set(self, alg: str) -> KeySet:
        """The active key of ``alg`` alone, for signers that name their key by the set (Authlib)."""
        _record, key = self._current().active(alg)
        return KeySet([key])

    def sign(self, claims: Mapping[str, Any], *, alg: str = "RS256", typ: str = "JWT") -> str:
        """Sign ``claims`` with the active key of ``alg``, naming it by an explicit ``kid``."""
        record, key = self._current().active(alg)
        header = {"alg": alg, "kid": record.kid, "typ": typ}
        return jwt.encode(header, dict(claims), key, algorithms=[alg])

    def verify(self, token: str, *, algorithms: Iterable[str] = SUPPORTED_ALGORITHMS) -> jwt.Token:
        """Verify a token this provider signed; raise ``JoseError`` when it is not one.

        Only published keys verify: a token signed by a revoked or pruned key fails here,
        at every endpoint that accepts our tokens.
        """
        allowed = [alg for alg in algorithms if alg in SUPPORTED_ALGORITHMS]
        if not allowed:
            # joserfc reads an empty list as "no restriction": refuse instead.
            raise UnsupportedAlgorithmError("none of the requested algorithms is supported")
        return jwt.decode(token, self._current().key_set, algorithms=allowed)

    def public_jwks(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self._current().jwks_json)
        return document

    def public_jwks_json(self) -> tuple[bytes, str]:
        """Return the JWKS document as bytes and its entity tag, computed once per key set."""
        loaded = self._current()
        return loaded.jwks_json, loaded.jwks_etag

    def supported_algorithms(self) -> list[str]:
        return sorted({r.alg for r in self._current().records if r.state == "active"})


def load_key_set(keys_dir: Path, passphrase: str | None) -> LoadedKeys:
    """Read a key folder's manifest and its published keys' files, refusing anything incomplete."""
    return LoadedKeys.of(load_folder(keys_dir, passphrase))
