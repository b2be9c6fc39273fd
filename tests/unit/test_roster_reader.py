"""The OneRoster CSV reader, on files written from the 1.2 CSV binding's column lists: quoting,
a BOM, CRLF, unknown columns, bad rows, text that is not UTF-8, a line without end, broken zips."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import IO

import pytest

from idp.students.roster.reader import (
    MANIFEST,
    ORGS,
    USERS,
    FolderSource,
    RosterFileError,
    Row,
    ZipSource,
    open_source,
    read_manifest,
    read_rows,
    row_status,
    split_list,
)

USERS_HEADER = (
    "sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,"
    "identifier,email,sms,phone,agentSourcedIds,grades,password,userMasterIdentifier,resourceSourcedIds,"
    "preferredGivenName,preferredMiddleName,preferredFamilyName,primaryOrgSourcedId,pronouns"
)
MANIFEST_TEXT = (
    "propertyName,value\nmanifest.version,1.0\noneroster.version,1.2\nfile.orgs,bulk\nfile.users,bulk\n"
    "file.roles,absent\nfile.demographics,absent\nfile.classes,absent\n"
)


def folder(tmp_path: Path, **files: bytes | str) -> FolderSource:
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (tmp_path / name.replace("_csv", ".csv")).write_bytes(data)
    return FolderSource(tmp_path)


def users(source: FolderSource | ZipSource, **options: int) -> list[Row]:
    return list(read_rows(source, USERS.name, USERS.required, **options))


def test_quoted_fields_keep_commas_quotes_and_lists(tmp_path: Path):
    row = (
        f'{USERS_HEADER}\nstu-1,,,true,ava,,"Ava ""Ace""","O\'Neil, Jr.",,,,,,"par-1,par-2","11,12",,,,,,,,\n'
    )

    (read,) = users(folder(tmp_path, users_csv=row))

    assert (read.line, read.get("givenName"), read.get("familyName")) == (2, 'Ava "Ace"', "O'Neil, Jr.")
    assert split_list(read.get("agentSourcedIds")) == ["par-1", "par-2"]
    assert split_list(read.get("grades")) == ["11", "12"]


def test_a_bom_and_crlf_line_endings_read_as_plain_utf8(tmp_path: Path):
    text = (
        f"{USERS_HEADER}\r\n"
        "stu-1,,,true,zoë,,Zoë,Núñez,,,,,,,,,,,,,,,\r\n"
        "stu-2,,,true,max,,Max,Li,,,,,,,,,,,,,,,\r\n"
    )

    read = users(folder(tmp_path, users_csv=b"\xef\xbb\xbf" + text.encode()))

    # The BOM is not part of the first column's name; no field keeps a carriage return.
    assert [(r.line, r.get("sourcedId"), r.values["familyName"]) for r in read] == [
        (2, "stu-1", "Núñez"),
        (3, "stu-2", "Li"),
    ]


def test_columns_are_found_by_name_and_unknown_ones_are_ignored(tmp_path: Path):
    text = "metadata.favouriteColour,familyName,givenName,sourcedId\nblue,Rivera,Zoe,stu-1\n"

    (read,) = users(folder(tmp_path, users_csv=text))

    assert (read.get("sourcedId"), read.get("givenName"), read.get("email")) == ("stu-1", "Zoe", "")


def test_a_missing_required_column_is_refused_with_its_name(tmp_path: Path):
    text = "sourcedId,status,dateLastModified,givenName\nstu-1,,,Zoe\n"

    with pytest.raises(RosterFileError) as refused:
        users(folder(tmp_path, users_csv=text))

    assert (refused.value.file, refused.value.line, refused.value.reason) == (
        "users.csv",
        1,
        "missing required column(s): familyName",
    )


def test_header_names_are_case_sensitive_and_unique(tmp_path: Path):
    with pytest.raises(RosterFileError, match="missing required column\\(s\\): givenName"):
        users(folder(tmp_path, users_csv="sourcedId,givenname,familyName\nstu-1,Zoe,Rivera\n"))
    with pytest.raises(RosterFileError, match="names a column twice: givenName"):
        users(folder(tmp_path, users_csv="sourcedId,givenName,familyName,givenName\nstu-1,Zoe,Rivera,Z\n"))


def test_an_empty_file_has_no_header(tmp_path: Path):
    with pytest.raises(RosterFileError, match="header row is missing"):
        users(folder(tmp_path, users_csv=""))


def test_a_row_with_too_few_fields_or_a_nul_is_reported_and_the_next_rows_are_read(tmp_path: Path):
    text = "sourcedId,givenName,familyName\nstu-1,Zoe\nstu-2,M\x00x,Li\nstu-3,Ava,Stone\n\n"

    read = users(folder(tmp_path, users_csv=text))

    assert [(r.line, r.problem) for r in read] == [
        (2, "expected 3 fields as in the header, found 2"),
        (3, "contains a NUL character"),
        (4, None),
    ]


def test_text_that_is_not_utf8_is_refused_on_its_line(tmp_path: Path):
    text = "sourcedId,givenName,familyName\nstu-1,Zoe,Rivera\nstu-2,Jos\xe9,Pe\xf1a\n".encode("latin-1")

    with pytest.raises(RosterFileError) as refused:
        users(folder(tmp_path, users_csv=text))

    assert (refused.value.line, refused.value.reason) == (3, "not UTF-8 text")


class EndlessLine(io.RawIOBase):
    """A file whose second line never ends: 2 GB of 'x' and more, made as they are read."""

    def __init__(self, header: bytes) -> None:
        self.header = header
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        size = len(buffer)
        if self.header:
            chunk, self.header = self.header[:size], self.header[size:]
        else:
            chunk = b"x" * size
        buffer[: len(chunk)] = chunk
        self.served += len(chunk)
        return len(chunk)


class EndlessSource:
    label = "endless"

    def __init__(self) -> None:
        self.stream = EndlessLine(b"sourcedId,givenName,familyName\nstu-1,")

    def has(self, name: str) -> bool:
        return True

    def open(self, name: str) -> IO[bytes]:
        return io.BufferedReader(self.stream)

    def close(self) -> None:
        pass


def test_a_line_without_end_is_refused_after_max_line_characters_not_read_to_its_end():
    source = EndlessSource()

    with pytest.raises(RosterFileError) as refused:
        list(read_rows(source, USERS.name, USERS.required))

    assert refused.value.line == 2
    assert "a line longer than 1,048,576 characters" in refused.value.reason
    # Only about a megabyte (and the reader's buffers) was read of a line that never ends.
    assert source.stream.served < 4 * 1024 * 1024


def test_a_long_field_within_a_short_limit_is_refused_the_same_way(tmp_path: Path):
    text = "sourcedId,givenName,familyName\nstu-1," + "y" * 5000 + ",Li\n"

    with pytest.raises(RosterFileError, match="a line longer than 1,000 characters"):
        users(folder(tmp_path, users_csv=text), max_line=1000)


def test_an_unclosed_quote_is_not_valid_csv(tmp_path: Path):
    with pytest.raises(RosterFileError, match="not valid CSV"):
        users(folder(tmp_path, users_csv='sourcedId,givenName,familyName\nstu-1,"Zoe,Rivera\n'))


def roster_zip(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def test_a_zip_is_read_from_its_top_level(tmp_path: Path):
    path = roster_zip(
        tmp_path / "roster.zip",
        {
            MANIFEST: MANIFEST_TEXT,
            "orgs.csv": "sourcedId,name,type\norg-1,Lincoln,school\n",
            "users.csv": "x\n",
        },
    )

    source = open_source(path)
    try:
        manifest = read_manifest(source)
        (org,) = read_rows(source, ORGS.name, ORGS.required)
    finally:
        source.close()

    assert (manifest.mode(ORGS), manifest.mode(USERS)) == ("bulk", "bulk")
    assert (org.get("sourcedId"), org.get("name")) == ("org-1", "Lincoln")


def test_a_truncated_zip_is_refused_as_damaged(tmp_path: Path):
    whole = roster_zip(tmp_path / "whole.zip", {MANIFEST: MANIFEST_TEXT, "users.csv": "a\n" * 10_000})
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])

    with pytest.raises(RosterFileError, match="not a readable zip file, damaged or truncated"):
        open_source(truncated)


def test_a_zip_member_with_a_wrong_checksum_is_refused_as_damaged(tmp_path: Path):
    body = "sourcedId,givenName,familyName\n" + "stu-1,Zoe,Rivera\n" * 200
    path = tmp_path / "stored.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("users.csv", body)
    data = bytearray(path.read_bytes())
    spot = data.index(b"Rivera", 200)
    data[spot : spot + 6] = b"Riverb"  # the central directory stays whole: only the CRC tells
    path.write_bytes(bytes(data))

    source = open_source(path)
    try:
        with pytest.raises(RosterFileError, match="damaged or truncated"):
            users(source)
    finally:
        source.close()


def test_the_manifest_must_say_oneroster_1_2_and_name_each_file_it_uses(tmp_path: Path):
    with pytest.raises(RosterFileError, match=r"oneroster\.version must be 1\.2"):
        read_manifest(folder(tmp_path, manifest_csv=MANIFEST_TEXT.replace("1.2", "1.1")))
    with pytest.raises(RosterFileError) as refused:
        read_manifest(folder(tmp_path, manifest_csv=MANIFEST_TEXT))
    assert (refused.value.file, refused.value.reason) == (
        "orgs.csv",
        "missing, though manifest.csv says it is bulk",
    )
    with pytest.raises(RosterFileError, match=r"file\.users must be bulk, delta or absent"):
        wrong = MANIFEST_TEXT.replace("file.orgs,bulk", "file.orgs,absent").replace(
            "file.users,bulk", "file.users,full"
        )
        read_manifest(folder(tmp_path, manifest_csv=wrong))


def test_a_set_without_manifest_is_refused(tmp_path: Path):
    with pytest.raises(RosterFileError, match=r"missing: a OneRoster set starts with manifest\.csv"):
        read_manifest(folder(tmp_path, users_csv="sourcedId\n"))


@pytest.mark.parametrize(
    ("mode", "status", "modified", "expected"),
    [
        ("bulk", "", "", "active"),
        ("delta", "active", "2026-11-30T18:00:00Z", "active"),
        ("delta", "tobedeleted", "2026-11-30", "tobedeleted"),
    ],
)
def test_a_row_status_follows_its_file_mode(mode: str, status: str, modified: str, expected: str):
    row = Row(2, {"status": status, "dateLastModified": modified})

    assert row_status(row, mode) == expected


@pytest.mark.parametrize(
    ("mode", "status", "modified", "message"),
    [
        ("bulk", "tobedeleted", "", "status must be blank in a bulk file"),
        ("delta", "", "2026-11-30", "status must be active or tobedeleted in a delta file"),
        ("delta", "active", "", "dateLastModified must be an ISO 8601 date and time"),
        ("delta", "active", "yesterday", "dateLastModified must be an ISO 8601 date and time"),
    ],
)
def test_a_row_status_out_of_its_mode_is_refused(mode: str, status: str, modified: str, message: str):
    with pytest.raises(ValueError, match=message):
        row_status(Row(2, {"status": status, "dateLastModified": modified}), mode)
