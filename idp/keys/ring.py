"""The key ring: the loaded key set, signing with the active key, verifying, and the JWKS.

Every process loads the set at start (making the first one, once, in an empty folder) and checks
the manifest every ``IDP_KEYS_CHECK_SECONDS``, so a rotation made by ``idp keys`` anywhere is in
use everywhere within moments.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import UnsupportedAlgorithmError
from joserfc.jwk import KeySet

from idp.clock import Clock
from idp.keys.store import (
    PUBLISHED_STATES,
    SUPPORTED_ALGORITHMS,
    KeyRecord,
    KeySetError,
    SigningKey,
    ensure_key_set,
    manifest_stamp,
    read_manifest,
    read_private_keys,
)

log = logging.getLogger(__name__)


class UnknownSigningKey(LookupError):
    pass


@dataclass(frozen=True)
class LoadedKeys:
    records: tuple[KeyRecord, ...]
    private: Mapping[str, SigningKey]
    stamp: tuple[int, int]
    # Built once per manifest change: every verify and every /jwks.json reuses them.
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
        keys_dir: Path,
        *,
        clock: Clock,
        passphrase: str | None = None,
        check_seconds: float = 2.0,
        algorithms: Iterable[str] = SUPPORTED_ALGORITHMS,
    ) -> None:
        self.keys_dir = keys_dir
        self.clock = clock
        self.passphrase = passphrase
        self.check_seconds = check_seconds
        self.algorithms = tuple(algorithms)
        self._lock = threading.Lock()
        self._checked_at = 0.0
        ensure_key_set(keys_dir, clock=clock, passphrase=passphrase, algorithms=self.algorithms)
        self._loaded = load_key_set(keys_dir, passphrase)

    def _current(self) -> LoadedKeys:
        # A cheap stat of the manifest every few seconds picks up a rotation done elsewhere.
        now = time.monotonic()
        if now - self._checked_at >= self.check_seconds:
            with self._lock:
                if now - self._checked_at >= self.check_seconds:
                    self._reload_if_changed()
                    self._checked_at = now
        return self._loaded

    def _reload_if_changed(self) -> None:
        if manifest_stamp(self.keys_dir) == self._loaded.stamp:
            return
        try:
            loaded = load_key_set(self.keys_dir, self.passphrase)
        except KeySetError:
            # A serving process keeps the set it has rather than fail every request;
            # it tries again at the next check, and the log says why.
            log.exception(
                "the changed key set in %s cannot be loaded; still serving the previous one", self.keys_dir
            )
            return
        self._loaded = loaded
        log.info(
            "key set reloaded: %s",
            ", ".join(f"{r.kid} {r.state}" for r in loaded.records if r.state in PUBLISHED_STATES),
        )

    def reload(self) -> None:
        """Read the manifest now instead of at the next check (after a change made by this process)."""
        with self._lock:
            self._reload_if_changed()
            self._checked_at = time.monotonic()

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
    """Read the manifest and its published keys' files, refusing anything incomplete."""
    for _attempt in range(3):
        stamp = manifest_stamp(keys_dir)
        try:
            return _load(keys_dir, passphrase, stamp)
        except KeySetError:
            # A key file may have been pruned between our read of the manifest and of the
            # file; a changed manifest means another process did that: read it again.
            if manifest_stamp(keys_dir) == stamp:
                raise
    return _load(keys_dir, passphrase, manifest_stamp(keys_dir))


def _load(keys_dir: Path, passphrase: str | None, stamp: tuple[int, int]) -> LoadedKeys:
    records = read_manifest(keys_dir)
    return LoadedKeys(records, read_private_keys(keys_dir, records, passphrase), stamp)
