"""Creating a parent account and linking its students by Access ID, without HTTP.

Everything is checked before anything is written: a refused registration leaves only the audit
events of the failed Access ID checks. The students' names come from their records, whatever
was typed.
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass, field

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.exc import IntegrityError

from idp.accounts.district import DistrictOptions
from idp.accounts.models import Account, AccountStatus, AccountType
from idp.accounts.password_policy import PasswordPolicyService, PasswordRules, Violation
from idp.accounts.service import AccountService
from idp.accounts.skeleton import confusable_skeleton
from idp.accounts.usernames import MAX_USERNAME_LENGTH, username_key
from idp.accounts.verification import EmailVerification
from idp.audit import audit
from idp.counters.store import whole_minutes
from idp.db import DbSession
from idp.students.access import (
    AccessDenied,
    AccessPaused,
    AccessRateLimited,
    StudentAccess,
    normalise_access_id,
)
from idp.students.guardianship import AccessSpent, GuardianshipService
from idp.students.models import Student
from idp.students.relationships import UnknownRelationship, canonical_relationship

MAX_STUDENT_ROWS = 10
NAME_LIMIT = 100
EMAIL_LIMIT = 254
STUDENT_NAME_LIMIT = 200
# Besides letters, marks and numbers, a username may hold these.
USERNAME_PUNCTUATION = frozenset("._-@'+")


class Problem(enum.StrEnum):
    """What is wrong with one field or one student row; the pages word each one."""

    REQUIRED = "required"
    TOO_LONG = "too_long"
    INVALID_CHARACTERS = "invalid_characters"
    EMAIL_INVALID = "email_invalid"
    USERNAME_INVALID = "username_invalid"
    USERNAME_TAKEN = "username_taken"
    NO_STUDENT = "no_student"
    TOO_MANY_STUDENTS = "too_many_students"
    ROW_INCOMPLETE = "row_incomplete"
    ROW_RELATIONSHIP = "row_relationship"
    ROW_ACCESS = "row_access"
    ROW_PAUSED = "row_paused"
    ROW_RATE_LIMITED = "row_rate_limited"
    ROW_ALREADY_LINKED = "row_already_linked"
    NOT_OFFERED = "not_offered"  # a choice that is not among those offered (a language)


@dataclass(frozen=True)
class StudentEntry:
    name: str = ""
    access_id: str = ""
    access_password: str = ""
    relationship: str = ""

    @property
    def is_blank(self) -> bool:
        return not (self.name.strip() or self.access_id.strip() or self.access_password)


@dataclass(frozen=True)
class RowProblem:
    problem: Problem
    minutes: int = 0


@dataclass
class Problems:
    """Every problem found, by field name and by student row, so a form can show them all at once."""

    fields: dict[str, list[Problem]] = field(default_factory=dict)
    password: list[Violation] = field(default_factory=list)
    rows: dict[int, RowProblem] = field(default_factory=dict)
    rules: PasswordRules | None = None

    def add(self, name: str, problem: Problem) -> None:
        self.fields.setdefault(name, []).append(problem)

    @property
    def rate_limited(self) -> bool:
        return any(p.problem is Problem.ROW_RATE_LIMITED for p in self.rows.values())

    def __bool__(self) -> bool:
        return bool(self.fields or self.password or self.rows)


class RegistrationRefused(Exception):
    def __init__(self, problems: Problems) -> None:
        super().__init__("registration refused")
        self.problems = problems


@dataclass(frozen=True)
class Registration:
    first_name: str
    last_name: str
    email: str
    username: str
    password: str
    password_confirm: str
    students: tuple[StudentEntry, ...]
    ip_address: str | None = None
    # The language of the pages the form was filled in: the account's mail goes in it.
    locale: str | None = None


def _row_of(entries: tuple[StudentEntry, ...], student: Student) -> int:
    """Return the index of the row that named ``student`` by its Access ID."""
    return next(
        (i for i, entry in enumerate(entries) if normalise_access_id(entry.access_id) == student.access_id), 0
    )


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"} for ch in text)


def check_name(problems: Problems, name: str, value: str, limit: int = NAME_LIMIT) -> str:
    value = value.strip()
    if not value:
        problems.add(name, Problem.REQUIRED)
    elif len(value) > limit:
        problems.add(name, Problem.TOO_LONG)
    elif _has_control(value):
        problems.add(name, Problem.INVALID_CHARACTERS)
    return value


def check_email(problems: Problems, name: str, value: str) -> str:
    value = value.strip()
    if not value:
        problems.add(name, Problem.REQUIRED)
        return value
    if len(value) > EMAIL_LIMIT:
        problems.add(name, Problem.TOO_LONG)
        return value
    try:
        return str(validate_email(value, check_deliverability=False).normalized)
    except EmailNotValidError:
        problems.add(name, Problem.EMAIL_INVALID)
        return value


def check_username(
    problems: Problems,
    name: str,
    value: str,
    accounts: AccountService,
    *,
    except_account_id: str | None = None,
) -> str:
    """Check a username someone chose: length, characters, and that no look-alike is taken."""
    display = unicodedata.normalize("NFKC", value).strip()
    if not display:
        problems.add(name, Problem.REQUIRED)
    elif len(value.strip()) > MAX_USERNAME_LENGTH or len(username_key(value)) > MAX_USERNAME_LENGTH:
        problems.add(name, Problem.TOO_LONG)
    elif (
        not all(
            unicodedata.category(ch)[0] in {"L", "M", "N"} or ch in USERNAME_PUNCTUATION for ch in display
        )
        or len(confusable_skeleton(display)) > 255
    ):
        problems.add(name, Problem.USERNAME_INVALID)
    elif accounts.username_in_use(value, except_account_id=except_account_id):
        problems.add(name, Problem.USERNAME_TAKEN)
    return value.strip()


def password_context(
    *, username: str, email: str, first_name: str, last_name: str, district: str
) -> list[str]:
    """Words a password may not be built from (NIST SP 800-63B-4: context-specific words)."""
    return [username, email.partition("@")[0], first_name, last_name, district]


def account_password_context(account: Account, district: str) -> list[str]:
    """``password_context`` of an existing account."""
    return password_context(
        username=account.username,
        email=account.email,
        first_name=account.first_name,
        last_name=account.last_name,
        district=district,
    )


class RegistrationService:
    def __init__(
        self,
        session: DbSession,
        *,
        accounts: AccountService,
        guardianship: GuardianshipService,
        access: StudentAccess,
        policies: PasswordPolicyService,
        verification: EmailVerification,
        options: DistrictOptions,
    ) -> None:
        self.session = session
        self.accounts = accounts
        self.guardianship = guardianship
        self.access = access
        self.policies = policies
        self.verification = verification
        self.options = options

    def register(self, form: Registration) -> Account:
        """Create a pending parent account linked to the students; raise RegistrationRefused otherwise."""
        problems = Problems()
        first_name = check_name(problems, "first_name", form.first_name)
        last_name = check_name(problems, "last_name", form.last_name)
        email = check_email(problems, "email", form.email)
        username = check_username(problems, "username", form.username, self.accounts)
        links = self.check_students(problems, form.students, ip_address=form.ip_address)
        rules = self.policies.rules_for_schools(student.school_id for student, _ in links)
        problems.rules = rules
        context = password_context(
            username=username,
            email=email,
            first_name=first_name,
            last_name=last_name,
            district=self.options.name,
        )
        problems.password = rules.check(form.password, context=context)
        if form.password != form.password_confirm:
            problems.password.append(Violation.MISMATCH)
        if problems:
            self.session.commit()  # the audit events of failed Access ID checks stay
            raise RegistrationRefused(problems)
        try:
            account = self.accounts.create(
                username=username,
                email=email,
                password=form.password,
                first_name=first_name,
                last_name=last_name,
                account_type=AccountType.PARENT,
                status=AccountStatus.PENDING,
            )
        except IntegrityError:
            # Another registration took the username (or a look-alike) between the check and the insert.
            self.session.rollback()
            problems.add("username", Problem.USERNAME_TAKEN)
            raise RegistrationRefused(problems) from None
        account.locale = form.locale
        try:
            for student, relationship in links:
                self.guardianship.link_by_access(
                    account, student, relationship, allowed=self.options.relationships
                )
        except AccessSpent:
            # Another guardian spent a single-use Access Password since it was checked.
            self.session.rollback()
            problems.rows[_row_of(form.students, student)] = RowProblem(Problem.ROW_ACCESS)
            raise RegistrationRefused(problems) from None
        audit(self.session, "account.registered", account_id=account.id, ip_address=form.ip_address)
        self.verification.send(account)
        self.session.commit()
        return account

    def check_students(
        self,
        problems: Problems,
        entries: tuple[StudentEntry, ...],
        *,
        ip_address: str | None,
        account: Account | None = None,
    ) -> list[tuple[Student, str]]:
        """Check every filled row's Access ID (each one counts against the throttles)."""
        filled = [(index, entry) for index, entry in enumerate(entries) if not entry.is_blank]
        if len(filled) > MAX_STUDENT_ROWS:
            problems.add("students", Problem.TOO_MANY_STUDENTS)
            return []
        found: dict[str, tuple[Student, str]] = {}
        for index, entry in filled:
            if not entry.access_id.strip() or not entry.access_password:
                problems.rows[index] = RowProblem(Problem.ROW_INCOMPLETE)
                continue
            if len(entry.name) > STUDENT_NAME_LIMIT:
                problems.rows[index] = RowProblem(Problem.TOO_LONG)
                continue
            try:
                relationship = canonical_relationship(entry.relationship, self.options.relationships)
            except UnknownRelationship:
                problems.rows[index] = RowProblem(Problem.ROW_RELATIONSHIP)
                continue
            try:
                student = self.access.check(
                    entry.access_id,
                    entry.access_password,
                    ip_address=ip_address,
                    account_id=account.id if account else None,
                )
            except AccessDenied:
                problems.rows[index] = RowProblem(Problem.ROW_ACCESS)
                continue
            except AccessPaused as paused:
                problems.rows[index] = RowProblem(Problem.ROW_PAUSED, whole_minutes(paused.resets_in))
                continue
            except AccessRateLimited as limited:
                problems.rows[index] = RowProblem(
                    Problem.ROW_RATE_LIMITED, whole_minutes(limited.retry_after)
                )
                continue
            found.setdefault(student.id, (student, relationship))
        if not filled:
            problems.add("students", Problem.NO_STUDENT)
        return list(found.values())
