"""Importing a OneRoster 1.2 CSV set: schools, students, roster guardians and their relations.

The import is one transaction in two passes. The first reads every file as a stream, checks each
row, and stages it in temporary tables (``staging``); the database then checks what spans files
(a sourcedId given twice, a role or a guardian naming nobody, two students with one id), and a
batched walk over the staged users checks what depends on a user's role. Any rejected row stops
there: the transaction is rolled back and the report lists every rejected row. Otherwise the
second pass writes, batch by batch, and the transaction commits once (a dry run rolls it back).

Mapping (docs/operations/rosters.md):

- a school is an org of type ``school``; its code is the org's ``identifier``, else its
  ``sourcedId``; its name, the org's ``name``. A school already known by that code and without a
  sourcedId is adopted. Schools are never removed.
- a student is a user with a ``student`` role; its id (``student_ids``) is the user's
  ``identifier``, else its ``sourcedId``; its school, the org of its (primary) student role; its
  grade, the first of ``grades``; its language, the ``metadata.language`` extension column of
  demographics.csv, else of users.csv. A student known by that id and without a sourcedId is
  adopted. New students get an Access ID (no Access Password: letters give those).
- a guardian is a user with a ``parent``, ``guardian`` or ``relative`` role: a roster guardian
  (names, email, language, role), not an account. Its students are those its ``agentSourcedIds``
  name, and those whose own ``agentSourcedIds`` name it: when its row is imported, the relations
  it no longer has are removed; a student's row adds relations, never removes them.
- a delta row with ``status=tobedeleted`` deactivates a student (its account links are removed,
  each holder mailed as for staff's unlink) or removes a guardian with its relations (the account
  that accepted its invitation loses those students, mailed likewise).

Everything is keyed by sourcedId: importing the same files again changes nothing.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from idp.accounts.models import Account
from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession, new_id
from idp.students.credentials import ACCESS_ID_DRAWS, AccessIdsExhausted, new_access_id
from idp.students.models import GuardianLink, School, Student
from idp.students.roster import staging
from idp.students.roster.models import (
    ROSTER_RELATIONSHIPS,
    SOURCED_ID_LIMIT,
    RosterGuardian,
    RosterGuardianStudent,
)
from idp.students.roster.reader import (
    ABSENT,
    DELTA,
    DELTA_COLUMNS,
    DEMOGRAPHICS,
    ORGS,
    ROLES,
    TO_BE_DELETED,
    USERS,
    FileSpec,
    Manifest,
    RosterFileError,
    RosterSource,
    Row,
    read_manifest,
    read_rows,
    row_status,
    split_list,
)
from idp.students.roster.report import ImportReport
from idp.students.unlinking import GuardianUnlinking

BATCH_SIZE = 1000
# What a roster's student is compared with: the stored student it updates or adopts.
STUDENT_FIELDS = (
    Student.id,
    Student.sourced_id,
    Student.sis_id,
    Student.first_name,
    Student.last_name,
    Student.school_id,
    Student.grade,
    Student.home_language,
    Student.active,
)
STUDENT = "student"
GUARDIAN = "guardian"
SCHOOL_TYPE = "school"
ROLE_TYPES = ("primary", "secondary")
# The extension columns (OneRoster 1.2 CSV: ``metadata.*``) that carry a family's language.
LANGUAGE_COLUMNS = ("metadata.language", "metadata.homeLanguage")
NAME_LIMIT = 100
STUDENT_ID_LIMIT = 64
GRADE_LIMIT = 16
EMAIL_LIMIT = 254
SCHOOL_CODE_LIMIT = 32
SCHOOL_NAME_LIMIT = 200
LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
LANGUAGE_LIMIT = 16
# The ORM leaves a None out of a bulk INSERT and starts a new statement for each set of columns
# that follows: rows with and without a language went a few at a time (200 statements a batch).
ALL_IN_ONE_INSERT = {"render_nulls": True}
# The tables the import looks up, batch by batch, by sourcedId and id.
TARGETS = tuple(model.__tablename__ for model in (School, Student, RosterGuardian, RosterGuardianStudent))


class RosterImportFailed(Exception):
    """The checked rows could not be written (the database refused); nothing was."""


def language_tag(value: str) -> str:
    """Return ``value`` as a BCP 47 tag (``es``, ``pt-BR``); raise ValueError if it is not one."""
    if len(value) > LANGUAGE_LIMIT or not LANGUAGE_TAG.fullmatch(value):
        raise ValueError(f"language must be a BCP 47 tag such as es or pt-BR (found {value!r})")
    primary, _, rest = value.partition("-")
    return primary.lower() + (f"-{rest}" if rest else "")


def _name_problem(label: str, value: str) -> str | None:
    if not value:
        return f"{label} is required"
    if len(value) > NAME_LIMIT:
        return f"{label} must be at most {NAME_LIMIT} characters"
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"} for ch in value):
        return f"{label} contains characters that cannot be shown"
    return None


def _first_language(row: Row) -> str:
    return next((row.get(column) for column in LANGUAGE_COLUMNS if row.get(column)), "")


@dataclass
class _User:
    """A staged user with what its batch learned: its kind, roles, agents, language and school."""

    line: int
    sourced_id: str
    status: str
    given_name: str
    family_name: str
    student_key: str
    email: str
    grades: str
    language: str
    kind: str | None = None
    role: str | None = None
    org_sid: str | None = None
    agent_sids: list[str] = field(default_factory=list)
    problem: str | None = None

    @property
    def deleted(self) -> bool:
        return self.status == TO_BE_DELETED


@dataclass
class _Context:
    """What one batch of users needs from the staged files and from the database."""

    users: list[_User]
    students: dict[str, Any]  # sourcedId -> existing student row
    guardians: dict[str, Any]  # sourcedId -> existing roster guardian row


class RosterImport:
    def __init__(
        self,
        session: DbSession,
        *,
        clock: Clock,
        unlinking: GuardianUnlinking,
        batch_size: int = BATCH_SIZE,
        max_line: int | None = None,
    ) -> None:
        self.session = session
        self.clock = clock
        self.unlinking = unlinking
        self.batch_size = batch_size
        self.max_line = max_line
        self.staging = staging.Staging(session, batch_size=batch_size)

    # --- the whole import -----------------------------------------------------------------
    def run(self, source: RosterSource, *, actor: str, dry_run: bool = False) -> ImportReport:
        """Check, then (unless rejected or a dry run) write the roster in one transaction."""
        report = ImportReport(dry_run=dry_run)
        try:
            manifest = read_manifest(source)
        except RosterFileError as error:
            report.reject(error.file, error.line, error.reason)
            return report
        try:
            self.staging.create()
            staging.prefer_indexes(self.session)
            # An import may follow another before autovacuum has seen what that one wrote.
            staging.analyze(self.session, *TARGETS)
            readable = self._stage(source, manifest, report)
            if readable:
                self._check(report)
            if report.is_rejected:
                self.session.rollback()
                return report
            self._apply(report, actor=actor)
            if dry_run:
                self.session.rollback()
                return report
            audit(
                self.session,
                "roster.imported",
                actor=actor,
                source=source.label,
                **{outcome: counts for outcome, counts in report.as_json().items() if outcome != "rejected"},
            )
            self.staging.drop()
            self.session.commit()
        except SQLAlchemyError as error:
            self.session.rollback()
            # The driver's first line says what was refused (a unique index and its value).
            detail = str(getattr(error, "orig", None) or error.__class__.__name__).splitlines()[0]
            raise RosterImportFailed(f"the database refused the import: {detail}") from error
        except AccessIdsExhausted as error:
            self.session.rollback()
            raise RosterImportFailed(str(error)) from error
        except BaseException:
            self.session.rollback()
            raise
        return report

    # --- first pass: read and stage -------------------------------------------------------
    def _stage(self, source: RosterSource, manifest: Manifest, report: ImportReport) -> bool:
        """Stage every file the manifest names; return False if one could not be read through."""
        readable = True
        stagers: tuple[tuple[FileSpec, Callable[[Row, str, ImportReport], None]], ...] = (
            (ORGS, self._stage_org),
            (USERS, self._stage_user),
            (ROLES, self._stage_role),
            (DEMOGRAPHICS, self._stage_demographic),
        )
        for spec, stage in stagers:
            mode = manifest.mode(spec)
            if mode == ABSENT:
                continue
            required = spec.required + (DELTA_COLUMNS if mode == DELTA else ())
            try:
                options = {} if self.max_line is None else {"max_line": self.max_line}
                for row in read_rows(source, spec.name, required, **options):
                    if row.problem is not None:
                        report.reject(spec.name, row.line, row.problem)
                        continue
                    sourced_id = row.get("sourcedId")
                    if not sourced_id or len(sourced_id) > SOURCED_ID_LIMIT:
                        report.reject(
                            spec.name, row.line, f"sourcedId must be 1 to {SOURCED_ID_LIMIT} characters"
                        )
                        continue
                    try:
                        status = row_status(row, mode)
                    except ValueError as refused:
                        report.reject(spec.name, row.line, str(refused))
                        continue
                    stage(row, status, report)
            except RosterFileError as error:
                report.reject(error.file, error.line, error.reason)
                readable = False
        self.staging.flush()
        return readable

    def _stage_org(self, row: Row, status: str, report: ImportReport) -> None:
        org_type, name = row.get("type"), " ".join(row.get("name").split())
        code = row.get("identifier") or row.get("sourcedId")
        if org_type == SCHOOL_TYPE and status != TO_BE_DELETED:
            if not name or len(name) > SCHOOL_NAME_LIMIT or not name.isprintable():
                report.reject(
                    ORGS.name, row.line, f"name must be 1 to {SCHOOL_NAME_LIMIT} printable characters"
                )
                return
            if len(code) > SCHOOL_CODE_LIMIT or any(ch.isspace() or not ch.isprintable() for ch in code):
                report.reject(
                    ORGS.name,
                    row.line,
                    f"a school's code (identifier, else sourcedId) must be 1 to {SCHOOL_CODE_LIMIT} "
                    f"characters without spaces (found {code!r})",
                )
                return
        self.staging.add(
            staging.orgs,
            line=row.line,
            sourced_id=row.get("sourcedId"),
            status=status,
            name=name,
            type=org_type,
            code=code,
        )

    def _stage_user(self, row: Row, status: str, report: ImportReport) -> None:
        sourced_id = row.get("sourcedId")
        self.staging.add(
            staging.users,
            line=row.line,
            sourced_id=sourced_id,
            status=status,
            given_name=" ".join(row.get("givenName").split()),
            family_name=" ".join(row.get("familyName").split()),
            student_key=row.get("identifier") or sourced_id,
            email=row.get("email"),
            grades=row.get("grades"),
            language=_first_language(row),
        )
        for position, agent in enumerate(dict.fromkeys(split_list(row.get("agentSourcedIds")))):
            self.staging.add(
                staging.agents, line=row.line, position=position, user_sid=sourced_id, agent_sid=agent
            )

    def _stage_role(self, row: Row, status: str, report: ImportReport) -> None:
        missing = [column for column in ("userSourcedId", "role", "orgSourcedId") if not row.get(column)]
        if missing:
            report.reject(ROLES.name, row.line, f"{', '.join(missing)} must not be blank")
            return
        if row.get("roleType") not in ROLE_TYPES:
            report.reject(
                ROLES.name, row.line, f"roleType must be primary or secondary (found {row.get('roleType')!r})"
            )
            return
        self.staging.add(
            staging.roles,
            line=row.line,
            sourced_id=row.get("sourcedId"),
            status=status,
            user_sid=row.get("userSourcedId"),
            role=row.get("role"),
            role_type=row.get("roleType"),
            org_sid=row.get("orgSourcedId"),
        )

    def _stage_demographic(self, row: Row, status: str, report: ImportReport) -> None:
        self.staging.add(
            staging.demographics,
            line=row.line,
            sourced_id=row.get("sourcedId"),
            status=status,
            language=_first_language(row),
        )

    # --- first pass: what spans files -----------------------------------------------------
    def _check(self, report: ImportReport) -> None:
        for table, spec in (
            (staging.orgs, ORGS),
            (staging.users, USERS),
            (staging.roles, ROLES),
            (staging.demographics, DEMOGRAPHICS),
        ):
            for line, sourced_id, first in self.staging.repeated(table):
                report.reject(spec.name, line, f"sourcedId {sourced_id!r} is also on line {first}")
        self._check_schools(report)
        self._check_roles(report)
        for batch in self.staging.batches(staging.users):
            context = self._context(batch)
            self._check_users(context, report)

    def _check_schools(self, report: ImportReport) -> None:
        for batch in self.staging.batches(staging.orgs):
            schools = [org for org in batch if org.type == SCHOOL_TYPE and org.status != TO_BE_DELETED]
            if not schools:
                continue
            codes = {org.code for org in schools}
            earlier = dict(
                self.session.execute(
                    select(staging.orgs.c.code, staging.orgs.c.line)
                    .where(
                        staging.orgs.c.code.in_(codes),
                        staging.orgs.c.type == SCHOOL_TYPE,
                        staging.orgs.c.status != TO_BE_DELETED,
                    )
                    .order_by(staging.orgs.c.line.desc())
                ).all()
            )  # code -> its first line (the last one written wins, in descending order)
            known = {
                school.code: school
                for school in self.session.execute(
                    select(School.id, School.code, School.sourced_id).where(School.code.in_(codes))
                )
            }
            by_sid = {
                school.sourced_id: school
                for school in self.session.execute(
                    select(School.id, School.code, School.sourced_id).where(
                        School.sourced_id.in_({org.sourced_id for org in schools})
                    )
                )
            }
            for org in schools:
                if earlier[org.code] < org.line:
                    report.reject(
                        ORGS.name, org.line, f"school code {org.code!r} is also on line {earlier[org.code]}"
                    )
                    continue
                holder = known.get(org.code)
                own = by_sid.get(org.sourced_id)
                if holder is not None and (
                    holder.sourced_id not in (None, org.sourced_id)
                    or (own is not None and own.id != holder.id)
                ):
                    report.reject(
                        ORGS.name, org.line, f"school code {org.code!r} already belongs to another school"
                    )

    def _check_roles(self, report: ImportReport) -> None:
        """A student's or guardian's role names a user of users.csv or one already imported."""
        kinds = (STUDENT, *ROSTER_RELATIONSHIPS)
        for batch in self.staging.batches(staging.roles):
            wanted = {role.user_sid for role in batch if role.role in kinds and role.status != TO_BE_DELETED}
            if not wanted:
                continue
            found = self._staged_user_sids(wanted) | self._existing_sids(wanted)
            for role in batch:
                if role.role in kinds and role.status != TO_BE_DELETED and role.user_sid not in found:
                    report.reject(
                        ROLES.name,
                        role.line,
                        f"userSourcedId {role.user_sid!r} is in neither users.csv nor the provider",
                    )

    def _check_users(self, context: _Context, report: ImportReport) -> None:
        users = [user for user in context.users if user.kind is not None or user.problem is not None]
        for user in users:
            if user.problem is not None:
                report.reject(USERS.name, user.line, user.problem)
        users = [user for user in users if user.problem is None and not user.deleted]
        students = [user for user in users if user.kind == STUDENT]
        guardians = [user for user in users if user.kind == GUARDIAN]
        self._check_schools_of(students, report)
        self._check_student_ids(students, context, report)
        agents = {sid for user in users for sid in user.agent_sids}
        known = self._staged_user_sids(agents) | self._existing_sids(agents) if agents else set()
        for user in students + guardians:
            problem = (
                _name_problem("givenName", user.given_name)
                or _name_problem("familyName", user.family_name)
                or self._language_problem(user)
                or next(
                    (
                        f"agentSourcedIds names {sid!r}, which is in neither users.csv nor the provider"
                        for sid in user.agent_sids
                        if sid not in known
                    ),
                    None,
                )
            )
            if problem is None and user.kind == STUDENT:
                grade = next(iter(split_list(user.grades)), "")
                if len(grade) > GRADE_LIMIT:
                    problem = f"a grade must be at most {GRADE_LIMIT} characters"
                elif len(user.student_key) > STUDENT_ID_LIMIT:
                    problem = f"a student's identifier must be at most {STUDENT_ID_LIMIT} characters"
            if problem is None and user.kind == GUARDIAN and user.email:
                problem = _email_problem(user.email)
            if problem is not None:
                report.reject(USERS.name, user.line, problem)

    @staticmethod
    def _language_problem(user: _User) -> str | None:
        if not user.language:
            return None
        try:
            language_tag(user.language)
        except ValueError as refused:
            return str(refused)
        return None

    def _check_schools_of(self, students: list[_User], report: ImportReport) -> None:
        org_sids = {user.org_sid for user in students if user.org_sid}
        if not org_sids:
            return
        staged = {
            org.sourced_id: org
            for org in self.session.execute(
                select(staging.orgs)
                .where(staging.orgs.c.sourced_id.in_(org_sids))
                .order_by(staging.orgs.c.line.desc())
            )
        }
        existing = set(
            self.session.execute(select(School.sourced_id).where(School.sourced_id.in_(org_sids))).scalars()
        )
        for user in students:
            if user.org_sid is None:
                continue
            org = staged.get(user.org_sid)
            if org is None and user.org_sid not in existing:
                report.reject(
                    USERS.name,
                    user.line,
                    f"this student's school, org {user.org_sid!r}, is in neither orgs.csv nor the provider",
                )
            elif org is not None and org.type != SCHOOL_TYPE:
                report.reject(
                    USERS.name,
                    user.line,
                    f"the student's role names org {user.org_sid!r}, a {org.type or 'org'}, not a school",
                )
            elif org is not None and org.status == TO_BE_DELETED:
                report.reject(
                    USERS.name,
                    user.line,
                    f"this student's school, org {user.org_sid!r}, is marked tobedeleted",
                )

    def _check_student_ids(self, students: list[_User], context: _Context, report: ImportReport) -> None:
        """No two students share an id, in the files or with one already on record."""
        keys = {user.student_key for user in students}
        if not keys:
            return
        student_sids = select(staging.roles.c.user_sid).where(staging.roles.c.role == STUDENT)
        first_line: dict[str, int] = {}
        for key, line in self.session.execute(
            select(staging.users.c.student_key, staging.users.c.line)
            .where(
                staging.users.c.student_key.in_(keys),
                staging.users.c.status != TO_BE_DELETED,
                staging.users.c.sourced_id.in_(student_sids),
            )
            .order_by(staging.users.c.line)
        ):
            first_line.setdefault(key, line)
        holders = {
            row.sis_id: row
            for row in self.session.execute(
                select(Student.id, Student.sis_id, Student.sourced_id).where(Student.sis_id.in_(keys))
            )
        }
        for user in students:
            first = first_line.get(user.student_key, user.line)
            if first < user.line:
                report.reject(
                    USERS.name, user.line, f"student id {user.student_key!r} is also on line {first}"
                )
                continue
            holder = holders.get(user.student_key)
            own = context.students.get(user.sourced_id)
            if holder is None or holder.sourced_id == user.sourced_id:
                continue
            if holder.sourced_id is None and own is None:
                continue  # a student entered by hand, which the roster now names: adopted
            report.reject(
                USERS.name, user.line, f"student id {user.student_key!r} already belongs to another student"
            )

    # --- a batch of users, with their roles, agents and records ----------------------------
    def _context(self, batch: Sequence[Any]) -> _Context:
        users = [
            _User(
                line=row.line,
                sourced_id=row.sourced_id,
                status=row.status,
                given_name=row.given_name or "",
                family_name=row.family_name or "",
                student_key=row.student_key or row.sourced_id,
                email=row.email or "",
                grades=row.grades or "",
                language=row.language or "",
            )
            for row in batch
        ]
        # The batch is a range of users.csv's lines: every look-up joins on it, no list of ids.
        users_t = staging.users
        in_batch = users_t.c.line.between(users[0].line, users[-1].line)
        roles: dict[str, list[Any]] = defaultdict(list)
        for role in self.session.execute(
            select(staging.roles)
            .join(users_t, users_t.c.sourced_id == staging.roles.c.user_sid)
            .where(in_batch)
            .order_by(staging.roles.c.line)
        ):
            roles[role.user_sid].append(role)
        agents: dict[str, list[str]] = defaultdict(list)
        for pair in self.session.execute(
            select(staging.agents.c.user_sid, staging.agents.c.agent_sid)
            .where(staging.agents.c.line.between(users[0].line, users[-1].line))
            .order_by(staging.agents.c.line, staging.agents.c.position)
        ):
            agents[pair.user_sid].append(pair.agent_sid)
        languages: dict[str, str] = {}
        for demographic in self.session.execute(
            select(staging.demographics.c.sourced_id, staging.demographics.c.language)
            .join(users_t, users_t.c.sourced_id == staging.demographics.c.sourced_id)
            .where(in_batch, staging.demographics.c.status != TO_BE_DELETED)
            .order_by(staging.demographics.c.line.desc())
        ):
            if demographic.language:
                languages[demographic.sourced_id] = demographic.language
        students = {
            row.sourced_id: row
            for row in self.session.execute(
                select(*STUDENT_FIELDS)
                .join(users_t, users_t.c.sourced_id == Student.sourced_id)
                .where(in_batch)
            )
        }
        guardians = {
            row.sourced_id: row
            for row in self.session.execute(
                select(
                    RosterGuardian.id,
                    RosterGuardian.sourced_id,
                    RosterGuardian.first_name,
                    RosterGuardian.last_name,
                    RosterGuardian.email,
                    RosterGuardian.language,
                    RosterGuardian.role,
                    RosterGuardian.account_id,
                )
                .join(users_t, users_t.c.sourced_id == RosterGuardian.sourced_id)
                .where(in_batch)
            )
        }
        for user in users:
            user.agent_sids = agents.get(user.sourced_id, [])
            user.language = languages.get(user.sourced_id) or user.language
            self._classify(user, roles.get(user.sourced_id, []), students, guardians)
        return _Context(users=users, students=students, guardians=guardians)

    @staticmethod
    def _classify(user: _User, roles: list[Any], students: dict[str, Any], guardians: dict[str, Any]) -> None:
        """Decide whether ``user`` is a student, a guardian or neither (staff: not imported)."""
        # A role marked tobedeleted still says who the user was; a live one says where.
        names = {role.role for role in roles}
        guardian_roles = sorted(
            (role for role in roles if role.role in ROSTER_RELATIONSHIPS),
            key=lambda role: (role.status == TO_BE_DELETED, role.role_type != "primary", role.line),
        )
        student_roles = sorted(
            (role for role in roles if role.role == STUDENT and role.status != TO_BE_DELETED),
            key=lambda role: (role.role_type != "primary", role.line),
        )
        is_student = STUDENT in names or (not names and user.sourced_id in students)
        is_guardian = bool(guardian_roles) or (not names and user.sourced_id in guardians)
        if is_student and is_guardian:
            user.problem = "a user may not be both a student and a guardian"
        elif is_student:
            if user.sourced_id in guardians:
                user.problem = "this sourcedId is a guardian already, not a student"
                return
            user.kind = STUDENT
            user.org_sid = student_roles[0].org_sid if student_roles else None
            if user.org_sid is None and user.sourced_id not in students and not user.deleted:
                user.problem = "a new student needs a student role (roles.csv) naming its school"
        elif is_guardian:
            if user.sourced_id in students:
                user.problem = "this sourcedId is a student already, not a guardian"
                return
            user.kind = GUARDIAN
            user.role = guardian_roles[0].role if guardian_roles else guardians[user.sourced_id].role
        elif not names and not user.deleted:
            user.problem = "no role for this user in roles.csv"

    def _staged_user_sids(self, sids: Iterable[str]) -> set[str]:
        return set(
            self.session.execute(
                select(staging.users.c.sourced_id).where(staging.users.c.sourced_id.in_(set(sids)))
            ).scalars()
        )

    def _existing_sids(self, sids: Iterable[str]) -> set[str]:
        wanted = set(sids)
        found = set(
            self.session.execute(select(Student.sourced_id).where(Student.sourced_id.in_(wanted))).scalars()
        )
        found |= set(
            self.session.execute(
                select(RosterGuardian.sourced_id).where(RosterGuardian.sourced_id.in_(wanted))
            ).scalars()
        )
        return {sid for sid in found if sid is not None}

    # --- second pass: write -----------------------------------------------------------------
    def _apply(self, report: ImportReport, *, actor: str) -> None:
        for batch in self.staging.batches(staging.orgs):
            self._apply_schools(batch, report)
        # Every student first: a guardian's relations name students of any batch.
        for batch in self.staging.batches(staging.users):
            self._apply_students(self._context(batch), report, actor=actor)
        # Each phase reads back, batch by batch, what the one before wrote.
        staging.analyze(self.session, School.__tablename__, Student.__tablename__)
        for batch in self.staging.batches(staging.users):
            self._apply_guardians(self._context(batch), report, actor=actor)
        staging.analyze(self.session, RosterGuardian.__tablename__, RosterGuardianStudent.__tablename__)
        for pairs in self.staging.agent_batches():
            self._apply_student_side_relations(pairs, report)
        self.session.flush()

    def _apply_schools(self, batch: Sequence[Any], report: ImportReport) -> None:
        orgs = [org for org in batch if org.type == SCHOOL_TYPE]
        if not orgs:
            return
        columns = (School.id, School.code, School.name, School.sourced_id)
        by_sid = {
            row.sourced_id: row
            for row in self.session.execute(
                select(*columns).where(School.sourced_id.in_({org.sourced_id for org in orgs}))
            )
        }
        by_code = {
            row.code: row
            for row in self.session.execute(
                select(*columns).where(
                    School.code.in_({org.code for org in orgs}), School.sourced_id.is_(None)
                )
            )
        }
        created: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        for org in orgs:
            existing = by_sid.get(org.sourced_id) or by_code.get(org.code)
            if org.status == TO_BE_DELETED:
                # Schools stay: their students leave through their own rows.
                if existing is not None:
                    report.count("unchanged", "schools")
                continue
            if existing is None:
                created.append(
                    {
                        "id": new_id(),
                        "code": org.code,
                        "name": org.name,
                        "sourced_id": org.sourced_id,
                        "created_at": self.clock.now(),
                    }
                )
                report.count("created", "schools")
                continue
            values = {
                name: value
                for name, value in (("code", org.code), ("name", org.name), ("sourced_id", org.sourced_id))
                if getattr(existing, name) != value
            }
            if values:
                changed.append({"id": existing.id, **values})
                report.count("updated", "schools")
            else:
                report.count("unchanged", "schools")
        if created:
            self.session.execute(insert(School), created)
        if changed:
            self.session.execute(update(School), changed)

    def _apply_students(self, context: _Context, report: ImportReport, *, actor: str) -> None:
        students = [user for user in context.users if user.kind == STUDENT]
        if not students:
            return
        schools = dict(
            self.session.execute(
                select(School.sourced_id, School.id).where(
                    School.sourced_id.in_({user.org_sid for user in students if user.org_sid})
                )
            ).all()
        )
        adoptable = {
            row.sis_id: row
            for row in self.session.execute(
                select(*STUDENT_FIELDS).where(
                    Student.sis_id.in_(
                        {user.student_key for user in students if user.sourced_id not in context.students}
                    ),
                    Student.sourced_id.is_(None),
                )
            )
        }
        created: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        deactivated: list[str] = []
        for user in students:
            existing = context.students.get(user.sourced_id)
            if user.deleted:
                if existing is None:
                    continue
                if existing.active:
                    changed.append({"id": existing.id, "active": False})
                    deactivated.append(existing.id)
                    report.count("removed", "students")
                else:
                    report.count("unchanged", "students")
                continue
            existing = existing or adoptable.get(user.student_key)
            wanted: dict[str, Any] = {
                "sourced_id": user.sourced_id,
                "sis_id": user.student_key,
                "first_name": user.given_name,
                "last_name": user.family_name,
                "grade": next(iter(split_list(user.grades)), None),
                "active": True,
            }
            if user.org_sid is not None:
                wanted["school_id"] = schools[user.org_sid]
            if user.language:
                wanted["home_language"] = language_tag(user.language)
            if existing is None:
                # Every new row names the same columns: one INSERT for the batch.
                created.append(
                    {"id": new_id(), "created_at": self.clock.now(), "home_language": None, **wanted}
                )
                report.count("created", "students")
                continue
            values = {name: value for name, value in wanted.items() if getattr(existing, name) != value}
            if values:
                changed.append({"id": existing.id, **values})
                report.count("updated", "students")
            else:
                report.count("unchanged", "students")
        if created:
            for row, access_id in zip(created, self._free_access_ids(len(created)), strict=True):
                row["access_id"] = access_id
            self.session.execute(insert(Student), created, execution_options=ALL_IN_ONE_INSERT)
        if changed:
            self.session.execute(update(Student), changed)
        if deactivated:
            self._remove_account_links(
                select(GuardianLink.id).where(GuardianLink.student_id.in_(deactivated)), report, actor=actor
            )
            removed = self.session.execute(
                delete(RosterGuardianStudent).where(RosterGuardianStudent.student_id.in_(deactivated))
            )
            report.count("removed", "links", _rowcount(removed))

    def _free_access_ids(self, n: int) -> list[str]:
        """Draw ``n`` Access IDs that no student has, nor one another (credentials.new_access_id)."""
        # An insertion-ordered dict as an ordered set: the batch's draws, each once.
        chosen: dict[str, None] = {}
        for _ in range(ACCESS_ID_DRAWS):
            candidates = [
                c for c in dict.fromkeys(new_access_id() for _ in range(n - len(chosen))) if c not in chosen
            ]
            taken = set(
                self.session.execute(
                    select(Student.access_id).where(Student.access_id.in_(candidates))
                ).scalars()
            )
            chosen.update(dict.fromkeys(c for c in candidates if c not in taken))
            if len(chosen) == n:
                return list(chosen)
        raise AccessIdsExhausted(f"no free Access IDs in {ACCESS_ID_DRAWS} draws")

    def _apply_guardians(self, context: _Context, report: ImportReport, *, actor: str) -> None:
        guardians = [user for user in context.users if user.kind == GUARDIAN]
        if not guardians:
            return
        now = self.clock.now()
        created: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        removed: list[Any] = []
        ids: dict[str, str] = {}  # sourcedId -> guardian id, of the guardians whose relations follow
        for user in guardians:
            existing = context.guardians.get(user.sourced_id)
            if user.deleted:
                if existing is not None:
                    removed.append(existing)
                    report.count("removed", "guardians")
                continue
            wanted: dict[str, Any] = {
                "first_name": user.given_name,
                "last_name": user.family_name,
                "email": _normalized_email(user.email) if user.email else None,
                "role": user.role,
            }
            if user.language:
                wanted["language"] = language_tag(user.language)
            if existing is None:
                guardian_id = new_id()
                created.append(
                    {
                        "id": guardian_id,
                        "sourced_id": user.sourced_id,
                        "created_at": now,
                        "updated_at": now,
                        "language": None,
                        **wanted,
                    }
                )
                report.count("created", "guardians")
            else:
                guardian_id = existing.id
                values = {name: value for name, value in wanted.items() if getattr(existing, name) != value}
                if values:
                    changed.append({"id": existing.id, "updated_at": now, **values})
                    report.count("updated", "guardians")
                else:
                    report.count("unchanged", "guardians")
            ids[user.sourced_id] = guardian_id
        if created:
            self.session.execute(insert(RosterGuardian), created, execution_options=ALL_IN_ONE_INSERT)
        if changed:
            self.session.execute(update(RosterGuardian), changed)
        for guardian in removed:
            self._remove_account_links(
                select(GuardianLink.id)
                .join(RosterGuardianStudent, RosterGuardianStudent.student_id == GuardianLink.student_id)
                .where(
                    RosterGuardianStudent.guardian_id == guardian.id,
                    GuardianLink.account_id == guardian.account_id,
                ),
                report,
                actor=actor,
            )
            gone = self.session.execute(
                delete(RosterGuardianStudent).where(RosterGuardianStudent.guardian_id == guardian.id)
            )
            report.count("removed", "links", _rowcount(gone))
            self.session.execute(delete(RosterGuardian).where(RosterGuardian.id == guardian.id))
        self._replace_relations(
            ids, {user.sourced_id: user.agent_sids for user in guardians}, context, report, actor=actor
        )

    def _replace_relations(
        self,
        ids: dict[str, str],
        agent_sids: dict[str, list[str]],
        context: _Context,
        report: ImportReport,
        *,
        actor: str,
    ) -> None:
        """Make each imported guardian's relations what the files say, no more, no less."""
        if not ids:
            return
        # The students a guardian's own row names, and the students whose rows name the guardian.
        pairs = {(sid, agent) for sid in ids for agent in agent_sids.get(sid, [])}
        pairs |= {
            (guardian_sid, student_sid)
            for student_sid, guardian_sid in self.session.execute(
                select(staging.agents.c.user_sid, staging.agents.c.agent_sid).where(
                    staging.agents.c.agent_sid.in_(set(ids))
                )
            )
        }
        students = dict(
            self.session.execute(
                select(Student.sourced_id, Student.id).where(
                    Student.sourced_id.in_({student_sid for _, student_sid in pairs}),
                    Student.active.is_(True),
                )
            ).all()
        )
        wanted = {
            (ids[guardian_sid], students[student_sid])
            for guardian_sid, student_sid in pairs
            if student_sid in students
        }
        existing = {
            (row.guardian_id, row.student_id)
            for row in self.session.execute(
                select(RosterGuardianStudent.guardian_id, RosterGuardianStudent.student_id).where(
                    RosterGuardianStudent.guardian_id.in_(set(ids.values()))
                )
            )
        }
        self._add_roster_links(wanted, existing, report)
        accounts = {existing_row.id: existing_row.account_id for existing_row in context.guardians.values()}
        for guardian_id, student_id in sorted(existing - wanted):
            account_id = accounts.get(guardian_id)
            if account_id is not None:
                self._remove_account_links(
                    select(GuardianLink.id).where(
                        GuardianLink.account_id == account_id, GuardianLink.student_id == student_id
                    ),
                    report,
                    actor=actor,
                )
            self.session.execute(
                delete(RosterGuardianStudent).where(
                    RosterGuardianStudent.guardian_id == guardian_id,
                    RosterGuardianStudent.student_id == student_id,
                )
            )
            report.count("removed", "links")

    def _apply_student_side_relations(self, pairs: Sequence[Any], report: ImportReport) -> None:
        """Add the relations a student's row names, for guardians whose own rows were not imported."""
        agent_sids = {pair.agent_sid for pair in pairs}
        imported = self._staged_user_sids(agent_sids)
        guardians = dict(
            self.session.execute(
                select(RosterGuardian.sourced_id, RosterGuardian.id).where(
                    RosterGuardian.sourced_id.in_(agent_sids - imported)
                )
            ).all()
        )
        if not guardians:
            return
        students = dict(
            self.session.execute(
                select(Student.sourced_id, Student.id).where(
                    Student.sourced_id.in_({pair.user_sid for pair in pairs}), Student.active.is_(True)
                )
            ).all()
        )
        wanted = {
            (guardians[pair.agent_sid], students[pair.user_sid])
            for pair in pairs
            if pair.agent_sid in guardians and pair.user_sid in students
        }
        if not wanted:
            return
        existing = {
            (row.guardian_id, row.student_id)
            for row in self.session.execute(
                select(RosterGuardianStudent.guardian_id, RosterGuardianStudent.student_id).where(
                    RosterGuardianStudent.guardian_id.in_({g for g, _ in wanted}),
                    RosterGuardianStudent.student_id.in_({s for _, s in wanted}),
                )
            )
        }
        self._add_roster_links(wanted, existing, report)

    def _add_roster_links(
        self, wanted: set[tuple[str, str]], existing: set[tuple[str, str]], report: ImportReport
    ) -> None:
        """Store the guardian and student pairs of ``wanted`` not already ``existing``; count both."""
        new = wanted - existing
        if new:
            now = self.clock.now()
            self.session.execute(
                insert(RosterGuardianStudent),
                [{"guardian_id": g, "student_id": s, "created_at": now} for g, s in sorted(new)],
            )
        report.count("created", "links", len(new))
        report.count("unchanged", "links", len(wanted & existing))

    def _remove_account_links(self, link_ids: Any, report: ImportReport, *, actor: str) -> None:
        """Unlink parent accounts from students the roster removed, mailing each holder."""
        found = self.session.execute(
            select(GuardianLink, Student, Account)
            .join(Student, Student.id == GuardianLink.student_id)
            .join(Account, Account.id == GuardianLink.account_id)
            .where(GuardianLink.id.in_(link_ids))
            .order_by(GuardianLink.id)
        ).all()
        for link, student, account in found:
            self.unlinking.remove(account, link, student, actor=actor, source="roster")
            report.accounts_unlinked += 1


def _email_problem(value: str) -> str | None:
    if len(value) > EMAIL_LIMIT:
        return f"email must be at most {EMAIL_LIMIT} characters"
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return f"email {value!r} is not a valid address"
    return None


def _normalized_email(value: str) -> str:
    return str(validate_email(value, check_deliverability=False).normalized)


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
