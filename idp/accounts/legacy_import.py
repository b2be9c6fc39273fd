"""``idp accounts import``: an old portal's accounts, their password hashes and student links, all or nothing.

The file is streamed twice. The first pass checks every row and works out what it would do (the
report); any rejected row, or ``--dry-run``, stops there, so nothing is written. The second pass
does it, in one transaction committed at the end. Memory stays flat: rows are read one at a time
from lines of bounded length, and what is kept across rows is a short digest per username (to
find a username, or a look-alike of one, that the file names twice).

A later import of the same username updates the account the import made, never one made here;
once its holder has signed in here (the password upgraded to argon2id), the account is theirs, and
the file only adds student links it does not have yet (docs/operations/legacy-accounts.md).
"""

from __future__ import annotations

import csv
import hashlib
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from idp.accounts import legacy_hashes
from idp.accounts.models import Account, AccountStatus, AccountType
from idp.accounts.passwords import MAX_PASSWORD_LENGTH
from idp.accounts.registration import USERNAME_PUNCTUATION
from idp.accounts.skeleton import confusable_skeleton
from idp.accounts.usernames import MAX_USERNAME_LENGTH, username_key
from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession, new_id
from idp.students.guardianship import GuardianshipService
from idp.students.models import GuardianLink, Student
from idp.students.relationships import SELF, UnknownRelationship, canonical_relationship

HEADER = (
    "username",
    "email",
    "first_name",
    "last_name",
    "account_type",
    "hash_type",
    "salt",
    "password_hash",
    "password_changed_at",
    "last_login_at",
    "status",
    "expires_at",
    "student_ids",
)
# Without these a row means nothing; the others may be absent (then every row leaves them empty).
REQUIRED_COLUMNS = ("username", "email", "account_type", "hash_type", "password_hash")
# A line longer than this is refused before it is decoded, so a 2 GB line costs 1 MiB of memory.
MAX_LINE_BYTES = 1 << 20
# Rows written per flush: one INSERT of many rows, then the flushed objects can go.
FLUSH_EVERY = 500
# The report lists this many rejected rows, then says how many more there were.
MAX_LISTED_REJECTIONS = 1000
ACCOUNT_TYPES = {"P": AccountType.PARENT, "S": AccountType.STUDENT}
STATUSES = {
    "active": AccountStatus.CONFIRMED,
    "": AccountStatus.CONFIRMED,  # the seed's PWA.AST: blank is confirmed
    "pending": AccountStatus.PENDING,
    "disabled": AccountStatus.DISABLED,
}
DEFAULT_RELATIONSHIP = "Guardian"
NAME_LIMIT = 100
EMAIL_LIMIT = 254
HASH_LIMIT = 255
SALT_LIMIT = 255


class FileRejected(Exception):
    """The file cannot be read on from ``line``: not UTF-8, a line too long, broken CSV, a bad header."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


class RowRejected(ValueError):
    """One row is wrong; its reason goes in the report."""


@dataclass(frozen=True)
class Rejection:
    file: str
    line: int
    reason: str


@dataclass
class Counts:
    accounts: int = 0
    links: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"accounts": self.accounts, "links": self.links}


@dataclass
class ImportReport:
    """What an import did (or, rejected or dry, would have done), as ``--json`` prints it."""

    file: str
    dry_run: bool
    created: Counts = field(default_factory=Counts)
    updated: Counts = field(default_factory=Counts)
    unchanged: Counts = field(default_factory=Counts)
    # Never counted: an import adds and updates, it does not take accounts or links away.
    removed: Counts = field(default_factory=Counts)
    rejected: list[Rejection] = field(default_factory=list)
    rejected_count: int = 0

    @property
    def written(self) -> bool:
        return not self.dry_run and not self.rejected_count

    def reject(self, line: int, reason: str) -> None:
        self.rejected_count += 1
        if len(self.rejected) < MAX_LISTED_REJECTIONS:
            self.rejected.append(Rejection(self.file, line, reason))

    def as_json(self) -> dict[str, Any]:
        rejected = [{"file": r.file, "line": r.line, "reason": r.reason} for r in self.rejected]
        unlisted = self.rejected_count - len(self.rejected)
        if unlisted:
            last = self.rejected[-1].line
            rejected.append({"file": self.file, "line": last, "reason": f"and {unlisted} more rows rejected"})
        return {
            "created": self.created.as_dict(),
            "updated": self.updated.as_dict(),
            "unchanged": self.unchanged.as_dict(),
            "removed": self.removed.as_dict(),
            "rejected": rejected,
        }


@dataclass(frozen=True)
class LegacyRow:
    """One row, checked: the values as the account will hold them."""

    line: int
    username: str
    key: str
    skeleton: str
    email: str
    first_name: str
    last_name: str
    account_type: AccountType
    scheme: str  # as the file names it: ``plaintext`` is protected before it is stored
    password_hash: str
    salt: str | None
    password_changed_at: datetime | None
    last_login_at: datetime | None
    status: AccountStatus
    expires_at: datetime | None
    students: tuple[tuple[str, str], ...]  # (SIS id, relationship label)


@dataclass
class Plan:
    """What one row does: a new account, or changes to the imported one, and its links."""

    row: LegacyRow
    account: Account | None
    changes: dict[str, Any]
    new_links: list[tuple[Student, str]]
    changed_links: list[tuple[GuardianLink, str]]
    unchanged_links: int


def _lines(stream: BinaryIO) -> Iterator[str]:
    """The file's lines, decoded; raise ``FileRejected`` at a line too long or not UTF-8."""
    number = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise FileRejected(number, f"the line is longer than {MAX_LINE_BYTES} bytes")
        try:
            # A line ends at a \n byte, which no multi-byte UTF-8 character contains.
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FileRejected(number, "not UTF-8 text") from None
        yield text.removeprefix("\ufeff") if number == 1 else text


def _records(stream: BinaryIO) -> Iterator[tuple[int, list[str]]]:
    """Each CSV record with the line it starts on; raise ``FileRejected`` where the CSV breaks."""
    reader = csv.reader(_lines(stream), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            # Among them: a field over csv.field_size_limit() (a quoted field that never ends).
            raise FileRejected(max(reader.line_num, start), f"not valid CSV: {error}") from None
        yield start, record


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"} for ch in text)


def _name(value: str, column: str) -> str:
    value = value.strip()
    if len(value) > NAME_LIMIT:
        raise RowRejected(f"{column} is longer than {NAME_LIMIT} characters")
    if _has_control(value):
        raise RowRejected(f"{column} holds control characters")
    return value


def _username(value: str) -> tuple[str, str, str]:
    """Return the display form, key and skeleton of a username, checked as registration checks one."""
    display = unicodedata.normalize("NFKC", value).strip()
    if not display:
        raise RowRejected("username is empty")
    key = username_key(value)
    if len(value.strip()) > MAX_USERNAME_LENGTH or len(key) > MAX_USERNAME_LENGTH:
        raise RowRejected(f"username is longer than {MAX_USERNAME_LENGTH} characters")
    allowed = all(
        unicodedata.category(ch)[0] in {"L", "M", "N"} or ch in USERNAME_PUNCTUATION for ch in display
    )
    skeleton = confusable_skeleton(value)
    if not allowed or len(skeleton) > 255:
        punctuation = "".join(sorted(USERNAME_PUNCTUATION))
        raise RowRejected(f"username {value.strip()!r} may hold only letters, digits and {punctuation}")
    return value.strip(), key, skeleton


def _email(value: str) -> str:
    value = value.strip()
    if not value:
        raise RowRejected("email is empty")
    if len(value) > EMAIL_LIMIT:
        raise RowRejected(f"email is longer than {EMAIL_LIMIT} characters")
    try:
        return str(validate_email(value, check_deliverability=False).normalized)
    except EmailNotValidError:
        raise RowRejected(f"email {value!r} is not an email address") from None


def _date(value: str, column: str) -> datetime | None:
    """An ISO 8601 date or time; one without a zone is UTC."""
    value = value.strip()
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise RowRejected(f"{column} {value!r} is not an ISO 8601 date") from None
    if not 1900 <= at.year <= 9000:
        raise RowRejected(f"{column} {value!r} is out of range")
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).astimezone(UTC)


def _password(scheme: str, stored: str, salt: str) -> tuple[str, str | None]:
    """Return the hash and salt to keep, checked against the scheme's format."""
    if scheme == legacy_hashes.PLAINTEXT:
        if not stored or len(stored) > MAX_PASSWORD_LENGTH or "\x00" in stored:
            raise RowRejected(f"a plaintext password must be 1 to {MAX_PASSWORD_LENGTH} characters")
        return stored, None
    stored = stored.strip()
    if not stored:
        raise RowRejected("password_hash is empty")
    if len(stored) > HASH_LIMIT:
        raise RowRejected(f"password_hash is longer than {HASH_LIMIT} characters")
    found = legacy_hashes.SCHEMES[scheme]
    problem = found.problem(stored)
    if problem is not None:
        raise RowRejected(f"password_hash is {problem}")
    if not found.salted:
        # bcrypt, Django's pbkdf2 and argon2 carry their salt in the hash: a salt column is ignored.
        return stored, None
    if len(salt) > SALT_LIMIT:
        raise RowRejected(f"salt is longer than {SALT_LIMIT} characters")
    return stored.lower(), salt


def _students(value: str, account_type: AccountType, allowed: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``ID[:Relationship];…``, each relationship one of the district's labels (Guardian if none)."""
    found: dict[str, str] = {}
    for entry in value.split(";"):
        sis_id, _, label = entry.partition(":")
        sis_id = sis_id.strip()
        if not sis_id:
            if entry.strip():
                raise RowRejected(f"student_ids entry {entry.strip()!r} has no student id")
            continue
        if account_type is AccountType.STUDENT:
            relationship = SELF
        else:
            try:
                relationship = canonical_relationship(label.strip() or DEFAULT_RELATIONSHIP, allowed)
            except UnknownRelationship as error:
                raise RowRejected(str(error)) from None
        found.setdefault(sis_id, relationship)
    if account_type is AccountType.STUDENT and len(found) > 1:
        raise RowRejected("a student account (S) links to one student: its own record")
    return tuple(found.items())


def parse_row(line: int, values: dict[str, str], allowed: tuple[str, ...]) -> LegacyRow:
    """Check one row's values; raise ``RowRejected`` with the first thing wrong."""
    username, key, skeleton = _username(values["username"])
    kind = values["account_type"].strip().upper()
    if kind not in ACCOUNT_TYPES:
        raise RowRejected(f"account_type {values['account_type']!r} is neither P nor S")
    try:
        scheme = legacy_hashes.hash_type(values["hash_type"])
    except legacy_hashes.UnknownHashType:
        raise RowRejected(f"unknown hash_type {values['hash_type'].strip()!r}") from None
    stored, salt = _password(scheme, values["password_hash"], values["salt"])
    status = values["status"].strip().lower()
    if status not in STATUSES:
        raise RowRejected(f"status {values['status']!r} is not active, pending or disabled")
    return LegacyRow(
        line=line,
        username=username,
        key=key,
        skeleton=skeleton,
        email=_email(values["email"]),
        first_name=_name(values["first_name"], "first_name"),
        last_name=_name(values["last_name"], "last_name"),
        account_type=ACCOUNT_TYPES[kind],
        scheme=scheme,
        password_hash=stored,
        salt=salt,
        password_changed_at=_date(values["password_changed_at"], "password_changed_at"),
        last_login_at=_date(values["last_login_at"], "last_login_at"),
        status=STATUSES[status],
        expires_at=_date(values["expires_at"], "expires_at"),
        students=_students(values["student_ids"], ACCOUNT_TYPES[kind], allowed),
    )


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=12).digest()


class LegacyAccounts:
    """Imports an old portal's accounts (``idp accounts import``) and counts those still on a legacy hash."""

    def __init__(
        self,
        session: DbSession,
        *,
        clock: Clock,
        guardianship: GuardianshipService,
        relationships: tuple[str, ...],
    ) -> None:
        self.session = session
        self.clock = clock
        self.guardianship = guardianship
        # The district's relationship labels (``idp district set --relationships``).
        self.relationships = relationships

    # --- the import --------------------------------------------------------------------------
    def import_csv(self, stream: BinaryIO, *, name: str, dry_run: bool, actor: str) -> ImportReport:
        """Check every row, then, unless one is rejected or ``dry_run``, write them all in one commit.

        ``stream`` must be seekable: it is read twice. Nothing is written unless the report says so
        (``report.written``).
        """
        report = ImportReport(name, dry_run)
        for plan in self._plans(stream, report):
            self._count(plan, report)
        if not report.written:
            self.session.rollback()
            return report
        stream.seek(0)
        written = ImportReport(name, dry_run)
        line = 0
        try:
            # Rows are written in batches (one INSERT of many rows); no row reads another's, as
            # the first pass refused a username, or a look-alike, that the file has twice.
            with self.session.no_autoflush:
                for number, plan in enumerate(self._plans(stream, written), 1):
                    line = plan.row.line
                    self._apply(plan)
                    if number % FLUSH_EVERY == 0:
                        # A flushed, unchanged row is only weakly held: memory stays flat.
                        self.session.flush()
            if written.rejected_count:
                # The file changed between the two passes: what was written goes.
                raise FileRejected(written.rejected[0].line, "the file changed while it was imported")
            audit(
                self.session,
                "accounts.imported",
                actor=actor,
                file=name,
                **{kind: getattr(report, kind).as_dict() for kind in ("created", "updated", "unchanged")},
            )
            self.session.commit()
        except IntegrityError:
            self.session.rollback()
            report.reject(
                line, "a username was taken meanwhile (at or before this line); nothing was imported"
            )
        except FileRejected as rejected:
            self.session.rollback()
            report.reject(rejected.line, rejected.reason)
        return report

    def _plans(self, stream: BinaryIO, report: ImportReport) -> Iterator[Plan]:
        """Each good row's plan; the others go in ``report``. A file that cannot be read on stops."""
        usernames: dict[bytes, int] = {}
        skeletons: dict[bytes, int] = {}
        try:
            records = _records(stream)
            columns = self._header(next(records, None))
            for line, record in records:
                if not any(value.strip() for value in record):
                    continue  # a blank line
                if len(record) != len(columns):
                    report.reject(line, f"{len(record)} fields where the header has {len(columns)}")
                    continue
                values = dict.fromkeys(HEADER, "")
                values.update(
                    (column, value) for column, value in zip(columns, record, strict=True) if column
                )
                try:
                    row = parse_row(line, values, self.relationships)
                    self._check_once(row, usernames, skeletons)
                    plan = self._plan(row)
                except RowRejected as rejected:
                    report.reject(line, str(rejected))
                    continue
                yield plan
        except FileRejected as rejected:
            report.reject(rejected.line, rejected.reason)

    @staticmethod
    def _header(record: tuple[int, list[str]] | None) -> list[str | None]:
        """The column each field is, by name (None: a column this import does not read)."""
        if record is None:
            raise FileRejected(1, "the file is empty: the first line must be the header")
        line, names = record
        columns = [name.strip().lower() for name in names]
        repeated = sorted({column for column in columns if column and columns.count(column) > 1})
        if repeated:
            raise FileRejected(line, f"the header names {', '.join(repeated)} more than once")
        missing = [column for column in REQUIRED_COLUMNS if column not in columns]
        if missing:
            raise FileRejected(line, f"missing required column(s): {', '.join(missing)}")
        return [column if column in HEADER else None for column in columns]

    @staticmethod
    def _check_once(row: LegacyRow, usernames: dict[bytes, int], skeletons: dict[bytes, int]) -> None:
        """Refuse a username, or a look-alike of one, that an earlier row of the file has."""
        key, skeleton = _digest(row.key), _digest(row.skeleton)
        if key in usernames:
            raise RowRejected(f"username {row.username!r} is also on line {usernames[key]}")
        if skeleton in skeletons:
            raise RowRejected(f"username {row.username!r} looks like the one on line {skeletons[skeleton]}")
        usernames[key] = skeletons[skeleton] = row.line

    def _plan(self, row: LegacyRow) -> Plan:
        """Work out what ``row`` does to the database; raise ``RowRejected`` if it cannot."""
        found = list(
            self.session.execute(
                select(Account).where(
                    (Account.username_key == row.key) | (Account.username_skeleton == row.skeleton)
                )
            ).scalars()
        )
        account = next((each for each in found if each.username_key == row.key), None)
        if account is None and found:
            raise RowRejected(
                f"username {row.username!r} looks like the existing account {found[0].username!r}"
            )
        if account is not None and account.imported_at is None:
            raise RowRejected(f"username {row.username!r} belongs to an account made here, not imported")
        if account is not None and account.type is not row.account_type:
            raise RowRejected(f"account_type differs from the imported account's ({account.type.value})")
        students = self._students(row)
        links = self._links(account, students)
        plan = Plan(row, account, {}, [], [], 0)
        still_legacy = legacy_hashes.is_legacy(account.password_scheme) if account is not None else True
        for student, relationship in zip(students, (label for _, label in row.students), strict=True):
            link = links.get(student.id)
            if link is None:
                plan.new_links.append((student, relationship))
            elif still_legacy and link.relationship != relationship:
                plan.changed_links.append((link, relationship))
            else:
                plan.unchanged_links += 1
        if account is not None and still_legacy:
            # Until its holder signs in here the account is the file's; afterwards it is theirs.
            plan.changes = {
                column: value
                for column, value in self._columns(row, account).items()
                if getattr(account, column) != value
            }
        return plan

    def _students(self, row: LegacyRow) -> list[Student]:
        """The row's students in its order; raise ``RowRejected`` naming one that is not on record."""
        wanted = [sis_id for sis_id, _ in row.students]
        if not wanted:
            return []
        found = {
            student.sis_id: student
            for student in self.session.execute(select(Student).where(Student.sis_id.in_(wanted))).scalars()
        }
        unknown = [sis_id for sis_id in wanted if sis_id not in found]
        if unknown:
            raise RowRejected(f"no student with id {', '.join(repr(sis_id) for sis_id in unknown)}")
        return [found[sis_id] for sis_id in wanted]

    def _links(self, account: Account | None, students: list[Student]) -> dict[str, GuardianLink]:
        if account is None or not students:
            return {}
        rows = self.session.execute(
            select(GuardianLink).where(
                GuardianLink.account_id == account.id,
                GuardianLink.student_id.in_([student.id for student in students]),
            )
        ).scalars()
        return {link.student_id: link for link in rows}

    def _columns(self, row: LegacyRow, account: Account | None) -> dict[str, Any]:
        """The account's columns as ``row`` has them; a plaintext password kept as its account has it."""
        if row.scheme != legacy_hashes.PLAINTEXT:
            password = {
                "password_scheme": row.scheme,
                "password_hash": row.password_hash,
                "legacy_salt": row.salt,
            }
        elif account is not None and legacy_hashes.verify(
            account.password_scheme, account.password_hash, account.legacy_salt, row.password_hash
        ):
            # Already protected with a salt of its own: the same password, unchanged.
            password = {
                "password_scheme": account.password_scheme,
                "password_hash": account.password_hash,
                "legacy_salt": account.legacy_salt,
            }
        else:
            scheme, stored, salt = legacy_hashes.protect_plaintext(row.password_hash)
            password = {"password_scheme": scheme, "password_hash": stored, "legacy_salt": salt}
        return {
            "email": row.email,
            "first_name": row.first_name,
            "last_name": row.last_name,
            "status": row.status,
            "expires_at": row.expires_at,
            **password,
            # A plaintext password is one the district set: it must be changed at the first sign-in.
            # A change staff asked for meanwhile (a reset of all passwords) stands.
            "must_change_password": row.scheme == legacy_hashes.PLAINTEXT
            or (account is not None and account.must_change_password),
            "password_changed_at": row.password_changed_at,
            # The claims' ``last_login_at`` is the sign-in before the current one: the old portal's last.
            "current_login_at": row.last_login_at,
            "last_login_at": row.last_login_at,
        }

    @staticmethod
    def _count(plan: Plan, report: ImportReport) -> None:
        if plan.account is None:
            report.created.accounts += 1
        elif plan.changes:
            report.updated.accounts += 1
        else:
            report.unchanged.accounts += 1
        report.created.links += len(plan.new_links)
        report.updated.links += len(plan.changed_links)
        report.unchanged.links += plan.unchanged_links

    def _apply(self, plan: Plan) -> None:
        now = self.clock.now()
        row = plan.row
        account = plan.account
        if account is None:
            account = Account(
                id=new_id(),
                type=row.account_type,
                username=row.username,
                username_key=row.key,
                username_skeleton=row.skeleton,
                # The old portal confirmed the address of an active account.
                email_verified_at=now if row.status is AccountStatus.CONFIRMED else None,
                created_at=now,
                imported_at=now,
                **self._columns(row, None),
            )
            self.session.add(account)
            audit(
                self.session,
                "account.created",
                account_id=account.id,
                account_type=account.type.value,
                source="legacy_import",
                password_scheme=account.password_scheme,
            )
        elif plan.changes:
            for column, value in plan.changes.items():
                setattr(account, column, value)
            if account.status is AccountStatus.CONFIRMED and account.email_verified_at is None:
                account.email_verified_at = now
            audit(
                self.session,
                "account.updated",
                account_id=account.id,
                source="legacy_import",
                # Names only: hashes and salts stay out of the audit trail.
                fields=sorted(plan.changes),
            )
        for link, relationship in plan.changed_links:
            link.relationship = relationship
            audit(
                self.session,
                "guardian_link.updated",
                account_id=account.id,
                student_id=link.student.sis_id,
                relationship=relationship,
            )
        for student, relationship in plan.new_links:
            self.guardianship.link(account, student, relationship, allowed=self.relationships)

    # --- what is left to upgrade ---------------------------------------------------------------
    def status(self) -> dict[str, int]:
        """Count the accounts still on a legacy hash, per scheme (``idp accounts legacy-status``)."""
        rows = self.session.execute(
            select(Account.password_scheme, func.count())
            .where(Account.password_scheme != legacy_hashes.MODERN_SCHEME)
            .group_by(Account.password_scheme)
            .order_by(Account.password_scheme)
        ).all()
        return {scheme: int(count) for scheme, count in rows}
