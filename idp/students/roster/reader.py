"""Reading a OneRoster 1.2 CSV set, a folder or a zip, one row at a time.

Every file is read as a stream (``csv`` over ``io.TextIOWrapper``; ``zipfile.ZipFile.open`` for
a zip), one physical line at a time and never more than ``MAX_LINE`` characters of one: a file
with a 2 GB line is refused after its first megabyte, so memory stays flat whatever the input.
The CSV binding (OneRoster 1.2, section 2) is followed where it matters to an importer: UTF-8
with or without a BOM, CRLF or LF, RFC 4180 quoting, header names case-sensitive and unique;
columns are found by name, so their order is free and unknown ones (``metadata.*`` extensions
among them) are ignored.

What cannot be read at all (a damaged zip, text that is not UTF-8, a missing required column, a
line too long, broken quoting) raises ``RosterFileError`` with the file and line; a row that can
be read but is malformed (a wrong number of fields, a NUL) comes back as a ``Row`` with its
``problem``, so that the caller reports every bad row of a file, not just the first.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Protocol

# The longest physical line read, in characters: a roster row is a few hundred.
MAX_LINE = 1 << 20
MANIFEST = "manifest.csv"
# What ``surrogateescape`` makes of a byte that is not UTF-8.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
BULK, DELTA, ABSENT = "bulk", "delta", "absent"
ACTIVE, TO_BE_DELETED = "active", "tobedeleted"


class RosterFileError(Exception):
    """A file cannot be read: which file, on which line (0: the file as a whole), and why."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        super().__init__(f"{file}{f' line {line}' if line else ''}: {reason}")
        self.file = file
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class FileSpec:
    """One file of the set: its name, its manifest property, and the columns the import needs."""

    name: str
    manifest_key: str
    required: tuple[str, ...]


ORGS = FileSpec("orgs.csv", "file.orgs", ("sourcedId", "name", "type"))
USERS = FileSpec("users.csv", "file.users", ("sourcedId", "givenName", "familyName"))
ROLES = FileSpec(
    "roles.csv", "file.roles", ("sourcedId", "userSourcedId", "roleType", "role", "orgSourcedId")
)
DEMOGRAPHICS = FileSpec("demographics.csv", "file.demographics", ("sourcedId",))
FILES = (ORGS, USERS, ROLES, DEMOGRAPHICS)
# A delta row says what happened to it, and when.
DELTA_COLUMNS = ("status", "dateLastModified")


@dataclass(frozen=True)
class Row:
    """One record: its line (the last physical line it spans) and its values by column name."""

    line: int
    values: dict[str, str]
    problem: str | None = None

    def get(self, column: str) -> str:
        return self.values.get(column, "").strip()


class RosterSource(Protocol):
    """Where the files are: a folder or a zip."""

    label: str

    def has(self, name: str) -> bool: ...

    def open(self, name: str) -> IO[bytes]: ...

    def close(self) -> None: ...


class FolderSource:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.label = str(folder)

    def has(self, name: str) -> bool:
        return (self.folder / name).is_file()

    def open(self, name: str) -> IO[bytes]:
        return (self.folder / name).open("rb")

    def close(self) -> None:
        pass


class ZipSource:
    """The files at the top of a zip (the binding's layout: no folders)."""

    def __init__(self, path: Path) -> None:
        self.label = str(path)
        self.archive = zipfile.ZipFile(path)
        self.names = {info.filename for info in self.archive.infolist() if not info.is_dir()}

    def has(self, name: str) -> bool:
        return name in self.names

    def open(self, name: str) -> IO[bytes]:
        return self.archive.open(name)

    def close(self) -> None:
        self.archive.close()


def open_source(path: Path) -> RosterSource:
    """Return the folder or zip at ``path``; raise ``RosterFileError`` if it is neither."""
    if path.is_dir():
        return FolderSource(path)
    if not path.is_file():
        raise RosterFileError(path.name, 0, "no such folder or zip file")
    try:
        return ZipSource(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
        raise RosterFileError(
            path.name, 0, f"not a readable zip file, damaged or truncated ({error})"
        ) from None


def _lines(text: io.TextIOWrapper, file: str, max_line: int) -> Iterator[str]:
    """Yield physical lines (endings kept, for ``csv``), refusing one longer than ``max_line``."""
    number = 0
    while True:
        try:
            line = text.readline(max_line + 1)
        except (zipfile.BadZipFile, EOFError, zlib.error) as error:
            raise RosterFileError(
                file, number + 1, f"the zip file is damaged or truncated ({error})"
            ) from None
        if not line:
            return
        number += 1
        if len(line) > max_line:
            raise RosterFileError(
                file, number, f"a line longer than {max_line:,} characters: is this a OneRoster CSV file?"
            )
        if _UNDECODABLE.search(line):
            raise RosterFileError(file, number, "not UTF-8 text")
        yield line


@contextmanager
def _text(source: RosterSource, file: str) -> Iterator[io.TextIOWrapper]:
    try:
        raw = source.open(file)
    except (zipfile.BadZipFile, EOFError, zlib.error, RuntimeError, OSError) as error:
        # RuntimeError: an encrypted member.
        raise RosterFileError(file, 0, f"cannot be opened ({error})") from None
    # utf-8-sig drops a BOM (the binding asks readers to tolerate one); newline="" leaves CRLF to
    # csv; bytes that are not UTF-8 become lone surrogates, so that ``_lines`` names their line.
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
    try:
        yield text
    finally:
        text.close()


def read_rows(
    source: RosterSource, file: str, required: tuple[str, ...], *, max_line: int = MAX_LINE
) -> Iterator[Row]:
    """Yield the rows of ``file`` one by one, by column name; check the header first."""
    # The limit is the csv module's, for the whole process: set for this file, put back after.
    previous_limit = csv.field_size_limit(max_line)
    try:
        yield from _rows(source, file, required, max_line)
    finally:
        csv.field_size_limit(previous_limit)


def _rows(source: RosterSource, file: str, required: tuple[str, ...], max_line: int) -> Iterator[Row]:
    with _text(source, file) as text:
        reader = csv.reader(_lines(text, file, max_line), strict=True)
        try:
            header = next(reader, None)
            if header is None or not any(name.strip() for name in header):
                raise RosterFileError(file, 1, "the header row is missing (the file is empty)")
            names = [name.strip() for name in header]
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise RosterFileError(file, 1, f"the header names a column twice: {', '.join(repeated)}")
            missing = [column for column in required if column not in names]
            if missing:
                raise RosterFileError(file, 1, f"missing required column(s): {', '.join(missing)}")
            for record in reader:
                line = reader.line_num
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue  # a blank line
                if len(record) != len(names):
                    yield Row(line, {}, f"expected {len(names)} fields as in the header, found {len(record)}")
                elif any("\x00" in value for value in record):
                    yield Row(line, {}, "contains a NUL character")
                else:
                    yield Row(line, dict(zip(names, record, strict=True)))
        except csv.Error as error:
            raise RosterFileError(file, reader.line_num, f"not valid CSV ({error})") from None


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.csv`` says of each file: bulk, delta or absent."""

    modes: dict[str, str]

    def mode(self, spec: FileSpec) -> str:
        return self.modes.get(spec.manifest_key, ABSENT)


def read_manifest(source: RosterSource) -> Manifest:
    """Read and check ``manifest.csv``; every file it names as bulk or delta must be there."""
    if not source.has(MANIFEST):
        raise RosterFileError(
            MANIFEST, 0, "missing: a OneRoster set starts with manifest.csv at its top level"
        )
    properties: dict[str, str] = {}
    for row in read_rows(source, MANIFEST, ("propertyName", "value")):
        if row.problem is not None:
            raise RosterFileError(MANIFEST, row.line, row.problem)
        name, value = row.get("propertyName"), row.get("value")
        if name in properties:
            raise RosterFileError(MANIFEST, row.line, f"{name} is given twice")
        properties[name] = value
    version = properties.get("oneroster.version", "")
    if version != "1.2" and not version.startswith("1.2."):
        raise RosterFileError(MANIFEST, 0, f"oneroster.version must be 1.2 (found {version or 'none'!r})")
    modes: dict[str, str] = {}
    for spec in FILES:
        mode = properties.get(spec.manifest_key, ABSENT) or ABSENT
        if mode not in (BULK, DELTA, ABSENT):
            raise RosterFileError(
                MANIFEST, 0, f"{spec.manifest_key} must be bulk, delta or absent (found {mode!r})"
            )
        if mode != ABSENT and not source.has(spec.name):
            raise RosterFileError(spec.name, 0, f"missing, though manifest.csv says it is {mode}")
        modes[spec.manifest_key] = mode
    return Manifest(modes)


def row_status(row: Row, mode: str) -> str:
    """Return ``active`` or ``tobedeleted`` for a row, as its file's mode allows; raise ValueError."""
    status = row.get("status")
    if mode == BULK:
        # A bulk file is the whole picture: its rows leave status and dateLastModified blank.
        if status not in ("", ACTIVE):
            raise ValueError(f"status must be blank in a bulk file (found {status!r})")
        return ACTIVE
    if status not in (ACTIVE, TO_BE_DELETED):
        raise ValueError(f"status must be active or tobedeleted in a delta file (found {status!r})")
    modified = row.get("dateLastModified")
    try:
        datetime.fromisoformat(modified.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"dateLastModified must be an ISO 8601 date and time in a delta file (found {modified!r})"
        ) from None
    return status


def split_list(value: str) -> list[str]:
    """Split a OneRoster list field (``"a,b"``) into its non-empty items."""
    return [item.strip() for item in value.split(",") if item.strip()]
