"""The key store in a folder (``IDP_KEYS_STORE=files``, the default): PEM files and a manifest.

The file format, the folder's lock and the atomic manifest write are in ``idp.keys.store``; this
is the ``KeyStore`` made of them. New key files are written before the manifest that names them
and removed again if the change fails; destroyed keys' files go only once no manifest names them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from idp.clock import Clock
from idp.keys.keystore import KeyDraft, Recorder, StoredKeys, check_whole_set, settle
from idp.keys.store import (
    MANIFEST,
    SUPPORTED_ALGORITHMS,
    KeyRecord,
    KeySetError,
    SigningKey,
    ensure_key_set,
    key_set_lock,
    manifest_stamp,
    read_manifest,
    read_private_keys,
    write_key_file,
    write_manifest,
)


class FileKeyStore:
    """The key set as files in ``keys_dir``, private keys encrypted with ``passphrase`` when set."""

    kind = "files"

    def __init__(self, keys_dir: Path, *, passphrase: str | None = None) -> None:
        self.keys_dir = keys_dir
        self.passphrase = passphrase

    def describe(self) -> str:
        return f"the key folder {self.keys_dir}"

    def ensure(self, *, clock: Clock, algorithms: Iterable[str] = SUPPORTED_ALGORITHMS) -> None:
        ensure_key_set(self.keys_dir, clock=clock, passphrase=self.passphrase, algorithms=algorithms)

    def stamp(self) -> tuple[int, int]:
        return manifest_stamp(self.keys_dir)

    def load(self) -> StoredKeys:
        return load_folder(self.keys_dir, self.passphrase)

    def read_records(self) -> tuple[KeyRecord, ...]:
        return read_manifest(self.keys_dir)

    def is_empty(self) -> bool:
        if not self.keys_dir.exists():
            return True
        return not (self.keys_dir / MANIFEST).exists() and not any(self.keys_dir.glob("*.pem"))

    def change(
        self, apply: Callable[[KeyDraft], None], *, clock: Clock, record: Recorder | None = None
    ) -> KeyDraft:
        with key_set_lock(self.keys_dir):
            draft = KeyDraft(read_manifest(self.keys_dir), now=clock.now())
            apply(draft)
            settle(draft, str(self.keys_dir / MANIFEST), record, self._write)
        return draft

    def _write(self, draft: KeyDraft) -> None:
        written: list[Path] = []
        try:
            for record in draft.records:
                if record.kid in draft.new_keys:
                    write_key_file(self.keys_dir, record.file, draft.new_keys[record.kid], self.passphrase)
                    written.append(self.keys_dir / record.file)
            write_manifest(self.keys_dir, draft.records)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        # Only once no manifest names them: a process reading the old one retries (load_folder).
        for record in draft.forgotten:
            (self.keys_dir / record.file).unlink(missing_ok=True)

    def replace_all(self, keys: StoredKeys, *, before_write: Callable[[], None] | None = None) -> None:
        """Write ``keys`` as this folder's set; files no manifest names any more are removed after."""
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        with key_set_lock(self.keys_dir):
            check_whole_set(keys, str(self.keys_dir / MANIFEST))
            if before_write is not None:
                before_write()
            before = {p.name for p in self.keys_dir.glob("*.pem")}
            for entry in keys.records:
                if entry.kid in keys.private:
                    _replace_key_file(self.keys_dir, entry.file, keys.private[entry.kid], self.passphrase)
            write_manifest(self.keys_dir, keys.records)
            for name in before - {entry.file for entry in keys.records}:
                (self.keys_dir / name).unlink(missing_ok=True)


def _replace_key_file(keys_dir: Path, filename: str, key: SigningKey, passphrase: str | None) -> None:
    # A temporary name and a rename: a file of the same kid is replaced whole, never half-written.
    temporary = f".{filename}.{os.getpid()}.tmp"
    (keys_dir / temporary).unlink(missing_ok=True)
    write_key_file(keys_dir, temporary, key, passphrase)
    os.replace(keys_dir / temporary, keys_dir / filename)


def load_folder(keys_dir: Path, passphrase: str | None) -> StoredKeys:
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


def _load(keys_dir: Path, passphrase: str | None, stamp: tuple[int, int]) -> StoredKeys:
    records = read_manifest(keys_dir)
    return StoredKeys(records, read_private_keys(keys_dir, records, passphrase), stamp)
