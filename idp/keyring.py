"""The signing key set in ``keys/``: load or create it once, sign with the active key, publish JWKS.

Layout: one PEM file per key (mode 0600, encrypted when a passphrase is set) and
``manifest.json`` naming each key's ``kid``, algorithm, state and times. Every change to the
folder is made under one file lock and is a new manifest written to a temporary file and
renamed, so a reader sees the old set or the new one, never half of either. Rotation rules
(what may change when) live in ``idp.keys.rotation``; this module only stores and serves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from filelock import FileLock, Timeout
from joserfc import jwt
from joserfc.errors import JoseError, UnsupportedAlgorithmError
from joserfc.jwk import ECKey, KeyParameters, KeySet, RSAKey

from idp.clock import Clock

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LOCK_FILE = ".keys.lock"
LOCK_TIMEOUT_SECONDS = 60.0
SUPPORTED_ALGORITHMS = ("RS256", "ES256")
# next: published, not signing yet; active: signs (one per algorithm); retired: published until
# its grace time ends; revoked: compromised, neither published nor accepted.
STATES = ("next", "active", "retired", "revoked")
PUBLISHED_STATES = ("next", "active", "retired")
TIME_FIELDS = ("created_at", "activated_at", "retired_at", "revoked_at")

SigningKey = RSAKey | ECKey


class KeySetError(RuntimeError):
    """The key folder cannot be used as it is; the message says what to do."""


class UnknownSigningKey(LookupError):
    pass


@dataclass(frozen=True)
class KeyRecord:
    """One manifest entry: which key, which algorithm, what state, and since when."""

    kid: str
    alg: str
    state: str
    created_at: datetime
    file: str
    activated_at: datetime | None = None
    retired_at: datetime | None = None
    revoked_at: datetime | None = None

    def as_manifest(self) -> dict[str, str]:
        entry = {"kid": self.kid, "alg": self.alg, "state": self.state}
        for name in TIME_FIELDS:
            moment: datetime | None = getattr(self, name)
            if moment is not None:
                entry[name] = _iso(moment)
        entry["file"] = self.file
        return entry

    def moved_to(self, state: str, at: datetime) -> KeyRecord:
        """Return this record in ``state``, stamped with the time it got there."""
        if state == "active":
            return replace(self, state=state, activated_at=at)
        if state == "retired":
            return replace(self, state=state, retired_at=at)
        if state == "revoked":
            return replace(self, state=state, revoked_at=at)
        return replace(self, state=state)


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
        if _manifest_stamp(self.keys_dir) == self._loaded.stamp:
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


@contextmanager
def key_set_lock(keys_dir: Path) -> Iterator[None]:
    """Hold the folder's lock: first creation and every manifest change take turns on it."""
    lock = FileLock(str(keys_dir / LOCK_FILE), timeout=LOCK_TIMEOUT_SECONDS)
    try:
        with lock:
            yield
    except Timeout:
        raise KeySetError(
            f"{keys_dir / LOCK_FILE} has been held for {LOCK_TIMEOUT_SECONDS:.0f} s by another "
            "process changing the key set; try again"
        ) from None


def ensure_key_set(
    keys_dir: Path,
    *,
    clock: Clock,
    passphrase: str | None,
    algorithms: Iterable[str] = SUPPORTED_ALGORITHMS,
) -> None:
    """Give an empty folder its first key set, exactly once however many workers start together.

    Each algorithm gets an active key and a next one, so the first rotation needs no wait.
    """
    keys_dir.mkdir(parents=True, exist_ok=True)
    if (keys_dir / MANIFEST).exists():
        return
    with key_set_lock(keys_dir):
        if (keys_dir / MANIFEST).exists():
            return
        leftovers = sorted(p.name for p in keys_dir.glob("*.pem"))
        if leftovers:
            # Making a new set here would silently invalidate every token in circulation.
            raise KeySetError(
                f"{keys_dir} holds key files ({', '.join(leftovers[:3])}) but no {MANIFEST}; "
                "restore the manifest from backup, or move the files away to start a new key set."
            )
        records = [
            generate_key(keys_dir, alg, state=state, clock=clock, passphrase=passphrase)
            for alg in algorithms
            for state in ("active", "next")
        ]
        write_manifest(keys_dir, records)


def generate_key(keys_dir: Path, alg: str, *, state: str, clock: Clock, passphrase: str | None) -> KeyRecord:
    """Create a private key file for ``alg`` and return its manifest record."""
    if alg not in SUPPORTED_ALGORITHMS:
        raise KeySetError(f"unsupported algorithm {alg!r}; use one of {', '.join(SUPPORTED_ALGORITHMS)}")
    created = clock.now()
    kid = f"{alg.lower()}-{created:%Y%m%d}-{secrets.token_hex(4)}"
    params = cast(KeyParameters, {"kid": kid, "alg": alg, "use": "sig"})
    key: SigningKey
    if alg == "RS256":
        key = RSAKey.generate_key(2048, parameters=params, private=True)
    else:
        key = ECKey.generate_key("P-256", parameters=params, private=True)
    pem = key.as_pem(private=True, password=passphrase)
    filename = f"{kid}.pem"
    fd = os.open(keys_dir / filename, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    record = KeyRecord(kid, alg, "next", created, filename)
    return record.moved_to(state, created) if state != "next" else record


def write_manifest(keys_dir: Path, records: Iterable[KeyRecord]) -> None:
    """Replace the manifest atomically: a temporary file, fsync, rename, fsync of the folder."""
    body = json.dumps({"version": 1, "keys": [r.as_manifest() for r in records]}, indent=2)
    temporary = keys_dir / f".{MANIFEST}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(body + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, keys_dir / MANIFEST)
    folder = os.open(keys_dir, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def read_manifest(keys_dir: Path) -> tuple[KeyRecord, ...]:
    """Return the manifest's records, refusing anything malformed with a clear reason."""
    manifest_path = keys_dir / MANIFEST
    try:
        document = json.loads(manifest_path.read_text())
        records = tuple(_record(entry) for entry in document["keys"])
    except FileNotFoundError:
        raise KeySetError(f"{manifest_path} is missing") from None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise KeySetError(
            f"{manifest_path} is not a readable key manifest ({error}); restore it from backup"
        ) from None
    check_states(manifest_path, records)
    return records


def load_key_set(keys_dir: Path, passphrase: str | None) -> LoadedKeys:
    """Read the manifest and its published keys' files, refusing anything incomplete."""
    for _attempt in range(3):
        stamp = _manifest_stamp(keys_dir)
        try:
            return _load(keys_dir, passphrase, stamp)
        except KeySetError:
            # A key file may have been pruned between our read of the manifest and of the
            # file; a changed manifest means another process did that: read it again.
            if _manifest_stamp(keys_dir) == stamp:
                raise
    return _load(keys_dir, passphrase, _manifest_stamp(keys_dir))


def _load(keys_dir: Path, passphrase: str | None, stamp: tuple[int, int]) -> LoadedKeys:
    manifest_path = keys_dir / MANIFEST
    records = read_manifest(keys_dir)
    private: dict[str, SigningKey] = {}
    for record in records:
        if record.state not in PUBLISHED_STATES:
            continue  # a revoked key's file is deleted; it is never loaded again
        params = cast(KeyParameters, {"kid": record.kid, "alg": record.alg, "use": "sig"})
        try:
            pem = (keys_dir / record.file).read_bytes()
            key_cls: type[RSAKey] | type[ECKey] = RSAKey if record.alg == "RS256" else ECKey
            private[record.kid] = key_cls.import_key(pem, parameters=params, password=passphrase)
        except FileNotFoundError:
            raise KeySetError(f"{manifest_path} names {record.file}, which is missing") from None
        except (JoseError, ValueError, TypeError) as error:
            raise KeySetError(f"cannot read {record.file} ({error}); is IDP_KEYS_PASSPHRASE right?") from None
    return LoadedKeys(records, private, stamp)


def _record(entry: Mapping[str, Any]) -> KeyRecord:
    times = {name: _parse_time(name, entry.get(name)) for name in TIME_FIELDS}
    created_at = times.pop("created_at")
    if created_at is None:
        raise KeyError("created_at")
    return KeyRecord(
        kid=str(entry["kid"]),
        alg=str(entry["alg"]),
        state=str(entry["state"]),
        created_at=created_at,
        file=str(entry["file"]),
        **times,
    )


def _parse_time(name: str, value: Any) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError(f"{name} {value!r} has no time zone")
    return moment


def check_states(manifest_path: Path, records: Iterable[KeyRecord]) -> None:
    """At most one active and one next key per algorithm, and always an active RS256 key.

    OIDC Core 15.1 requires RS256; two active keys would make the signing key ambiguous.
    """
    records = tuple(records)
    for record in records:
        if record.state not in STATES:
            raise KeySetError(f"{manifest_path}: key {record.kid} has unknown state {record.state!r}")
        if record.alg not in SUPPORTED_ALGORITHMS:
            raise KeySetError(f"{manifest_path}: key {record.kid} has unsupported alg {record.alg}")
        if Path(record.file).name != record.file or not record.file:
            raise KeySetError(f"{manifest_path}: key file {record.file!r} must be a bare name")
    kids = [r.kid for r in records]
    if len(set(kids)) != len(kids):
        raise KeySetError(f"{manifest_path}: a kid appears twice")
    for alg in SUPPORTED_ALGORITHMS:
        for state in ("active", "next"):
            if len([r for r in records if r.alg == alg and r.state == state]) > 1:
                raise KeySetError(f"{manifest_path}: more than one {state} {alg} key")
    if not any(r.alg == "RS256" and r.state == "active" for r in records):
        raise KeySetError(f"{manifest_path}: no active RS256 key; restore the manifest from backup")


def _manifest_stamp(keys_dir: Path) -> tuple[int, int]:
    try:
        info = (keys_dir / MANIFEST).stat()
    except FileNotFoundError:
        return (0, 0)
    return (info.st_mtime_ns, info.st_ino)


def _iso(moment: datetime) -> str:
    # Whole seconds print as such; finer times keep their microseconds, so ages stay exact.
    return moment.isoformat()
