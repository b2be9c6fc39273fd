"""The signing key set in ``keys/``: load or create it once, sign with the active key, publish JWKS.

Layout: one PEM file per key (mode 0600, encrypted when a passphrase is set) and
``manifest.json`` naming each key's ``kid``, algorithm, state and creation time.
Every change to the folder is a new manifest written to a temporary file and renamed,
so a reader sees the old set or the new one, never half of either.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from filelock import FileLock
from joserfc import jwt
from joserfc.errors import JoseError, UnsupportedAlgorithmError
from joserfc.jwk import ECKey, KeyParameters, KeySet, RSAKey

from idp.clock import Clock

MANIFEST = "manifest.json"
SUPPORTED_ALGORITHMS = ("RS256", "ES256")
# States a key can be in; only "active" signs, all three are published.
PUBLISHED_STATES = ("next", "active", "retired")

SigningKey = RSAKey | ECKey


class KeySetError(RuntimeError):
    """The key folder cannot be used as it is; the message says what to do."""


class UnknownSigningKey(LookupError):
    pass


@dataclass(frozen=True)
class KeyRecord:
    kid: str
    alg: str
    state: str
    created_at: str
    file: str

    def as_manifest(self) -> dict[str, str]:
        return {
            "kid": self.kid,
            "alg": self.alg,
            "state": self.state,
            "created_at": self.created_at,
            "file": self.file,
        }


@dataclass(frozen=True)
class LoadedKeys:
    records: tuple[KeyRecord, ...]
    private: Mapping[str, SigningKey]
    stamp: tuple[int, int]

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
                    stamp = _manifest_stamp(self.keys_dir)
                    if stamp != self._loaded.stamp:
                        self._loaded = load_key_set(self.keys_dir, self.passphrase)
                    self._checked_at = now
        return self._loaded

    def records(self) -> tuple[KeyRecord, ...]:
        return self._current().records

    def sign(self, claims: Mapping[str, Any], *, alg: str = "RS256", typ: str = "JWT") -> str:
        """Sign ``claims`` with the active key of ``alg``, naming it by an explicit ``kid``."""
        record, key = self._current().active(alg)
        header = {"alg": alg, "kid": record.kid, "typ": typ}
        return jwt.encode(header, dict(claims), key, algorithms=[alg])

    def verify(self, token: str, *, algorithms: Iterable[str] = SUPPORTED_ALGORITHMS) -> jwt.Token:
        """Verify a token this provider signed; raise ``JoseError`` when it is not one."""
        allowed = [alg for alg in algorithms if alg in SUPPORTED_ALGORITHMS]
        if not allowed:
            # joserfc reads an empty list as "no restriction": refuse instead.
            raise UnsupportedAlgorithmError("none of the requested algorithms is supported")
        key_set = KeySet(list[Any](self._current().published()))
        return jwt.decode(token, key_set, algorithms=allowed)

    def public_jwks(self) -> dict[str, Any]:
        keys = [key.as_dict(private=False) for key in self._current().published()]
        return {"keys": keys}

    def supported_algorithms(self) -> list[str]:
        return sorted({r.alg for r in self._current().records if r.state == "active"})


def ensure_key_set(
    keys_dir: Path,
    *,
    clock: Clock,
    passphrase: str | None,
    algorithms: Iterable[str] = SUPPORTED_ALGORITHMS,
) -> None:
    """Give an empty folder its first key set, exactly once however many workers start together."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    if (keys_dir / MANIFEST).exists():
        return
    with FileLock(str(keys_dir / ".keys.lock")):
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
            generate_key(keys_dir, alg, state="active", clock=clock, passphrase=passphrase)
            for alg in algorithms
        ]
        write_manifest(keys_dir, records)


def generate_key(keys_dir: Path, alg: str, *, state: str, clock: Clock, passphrase: str | None) -> KeyRecord:
    """Create a private key file for ``alg`` and return its manifest record."""
    if alg not in SUPPORTED_ALGORITHMS:
        raise KeySetError(f"unsupported algorithm {alg!r}; use one of {SUPPORTED_ALGORITHMS}")
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
    return KeyRecord(kid, alg, state, _iso(created), filename)


def write_manifest(keys_dir: Path, records: Iterable[KeyRecord]) -> None:
    """Replace the manifest atomically: a temporary file, fsync, rename."""
    body = json.dumps({"version": 1, "keys": [r.as_manifest() for r in records]}, indent=2)
    temporary = keys_dir / f".{MANIFEST}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(body + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, keys_dir / MANIFEST)


def load_key_set(keys_dir: Path, passphrase: str | None) -> LoadedKeys:
    """Read the manifest and its key files, refusing anything incomplete with a clear reason."""
    manifest_path = keys_dir / MANIFEST
    stamp = _manifest_stamp(keys_dir)
    try:
        document = json.loads(manifest_path.read_text())
        records = tuple(
            KeyRecord(
                kid=str(entry["kid"]),
                alg=str(entry["alg"]),
                state=str(entry["state"]),
                created_at=str(entry["created_at"]),
                file=str(entry["file"]),
            )
            for entry in document["keys"]
        )
    except FileNotFoundError:
        raise KeySetError(f"{manifest_path} is missing") from None
    except (ValueError, KeyError, TypeError) as error:
        raise KeySetError(
            f"{manifest_path} is not a readable key manifest ({error}); restore it from backup"
        ) from None
    _check_states(manifest_path, records)
    private: dict[str, SigningKey] = {}
    for record in records:
        if record.alg not in SUPPORTED_ALGORITHMS:
            raise KeySetError(f"{manifest_path}: key {record.kid} has unsupported alg {record.alg}")
        if Path(record.file).name != record.file:
            raise KeySetError(f"{manifest_path}: key file {record.file!r} must be a bare name")
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


def _check_states(manifest_path: Path, records: tuple[KeyRecord, ...]) -> None:
    """One active key per algorithm, and always an RS256 one (OIDC Core 15.1 requires RS256)."""
    for record in records:
        if record.state not in PUBLISHED_STATES:
            raise KeySetError(f"{manifest_path}: key {record.kid} has unknown state {record.state!r}")
    kids = [r.kid for r in records]
    if len(set(kids)) != len(kids):
        raise KeySetError(f"{manifest_path}: a kid appears twice")
    for alg in SUPPORTED_ALGORITHMS:
        active = [r for r in records if r.alg == alg and r.state == "active"]
        if len(active) > 1:
            raise KeySetError(f"{manifest_path}: more than one active {alg} key")
    if not any(r.alg == "RS256" and r.state == "active" for r in records):
        raise KeySetError(f"{manifest_path}: no active RS256 key; restore the manifest from backup")


def _manifest_stamp(keys_dir: Path) -> tuple[int, int]:
    try:
        info = (keys_dir / MANIFEST).stat()
    except FileNotFoundError:
        return (0, 0)
    return (info.st_mtime_ns, info.st_ino)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
