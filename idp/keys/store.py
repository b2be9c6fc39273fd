"""The key set's files in ``keys/``: one PEM file per key and a manifest naming their states.

Layout: one PEM file per key (mode 0600, encrypted when a passphrase is set) and
``manifest.json`` naming each key's ``kid``, algorithm, state and times. Every change to the
folder is made under one file lock and is a new manifest written to a temporary file and
renamed, so a reader sees the old set or the new one, never half of either. Rotation rules
(what may change when) live in ``idp.keys.rotation``; signing and serving in ``idp.keys.ring``.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from filelock import FileLock, Timeout
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeyParameters, RSAKey

from idp.clock import Clock

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


def new_signing_key(alg: str, *, now: datetime) -> tuple[KeyRecord, SigningKey]:
    """Make a private key for ``alg`` and its ``next`` record (kept nowhere yet)."""
    if alg not in SUPPORTED_ALGORITHMS:
        raise KeySetError(f"unsupported algorithm {alg!r}; use one of {', '.join(SUPPORTED_ALGORITHMS)}")
    kid = f"{alg.lower()}-{now:%Y%m%d}-{secrets.token_hex(4)}"
    params = cast(KeyParameters, {"kid": kid, "alg": alg, "use": "sig"})
    key: SigningKey
    if alg == "RS256":
        key = RSAKey.generate_key(2048, parameters=params, private=True)
    else:
        key = ECKey.generate_key("P-256", parameters=params, private=True)
    return KeyRecord(kid, alg, "next", now, f"{kid}.pem"), key


def import_private_key(record: KeyRecord, pem: bytes, passphrase: str | None = None) -> SigningKey:
    """Read ``record``'s private key from ``pem``, named by its kid and algorithm."""
    params = cast(KeyParameters, {"kid": record.kid, "alg": record.alg, "use": "sig"})
    key_cls: type[RSAKey] | type[ECKey] = RSAKey if record.alg == "RS256" else ECKey
    return key_cls.import_key(pem, parameters=params, password=passphrase)


def write_key_file(keys_dir: Path, filename: str, key: SigningKey, passphrase: str | None) -> None:
    """Write a new private key file, mode 0600, refusing to overwrite one."""
    fd = os.open(keys_dir / filename, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.as_pem(private=True, password=passphrase))
        handle.flush()
        os.fsync(handle.fileno())


def generate_key(keys_dir: Path, alg: str, *, state: str, clock: Clock, passphrase: str | None) -> KeyRecord:
    """Create a private key file for ``alg`` and return its manifest record."""
    record, key = new_signing_key(alg, now=clock.now())
    write_key_file(keys_dir, record.file, key, passphrase)
    return record.moved_to(state, record.created_at) if state != "next" else record


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


def read_private_keys(
    keys_dir: Path, records: Iterable[KeyRecord], passphrase: str | None
) -> dict[str, SigningKey]:
    """Read the private key of every published record, refusing a missing or unreadable file."""
    private: dict[str, SigningKey] = {}
    for record in records:
        if record.state not in PUBLISHED_STATES:
            continue  # a revoked key's file is deleted; it is never loaded again
        try:
            pem = (keys_dir / record.file).read_bytes()
            private[record.kid] = import_private_key(record, pem, passphrase)
        except FileNotFoundError:
            raise KeySetError(f"{keys_dir / MANIFEST} names {record.file}, which is missing") from None
        except (JoseError, ValueError, TypeError) as error:
            raise KeySetError(f"cannot read {record.file} ({error}); is IDP_KEYS_PASSPHRASE right?") from None
    return private


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


def check_states(manifest_path: Path | str, records: Iterable[KeyRecord]) -> None:
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


def manifest_stamp(keys_dir: Path) -> tuple[int, int]:
    try:
        info = (keys_dir / MANIFEST).stat()
    except FileNotFoundError:
        return (0, 0)
    return (info.st_mtime_ns, info.st_ino)


def _iso(moment: datetime) -> str:
    # Whole seconds print as such; finer times keep their microseconds, so ages stay exact.
    return moment.isoformat()
