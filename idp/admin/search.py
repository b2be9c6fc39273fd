"""Account search for the console and the admin API: one box, two filters, keyset pages, in scope.

``q`` matches the email, the username, the name ("first last") or a linked student's student ID
number. A whole email address matches that address (or a username or student ID equal to it).
Otherwise, with a run of 3 letters or digits in it, ``q`` matches anywhere in them (``pg_trgm`` GIN
indexes on PostgreSQL); shorter, it matches whole values only (btree indexes), since a trigram
index cannot answer a substring of fewer than 3 word characters. LIKE's ``%``, ``_`` and ``\\``
in ``q`` are literal. Rows come ordered by (last name, first name, id), a page at a time: the
cursor of a page is the key of its last row (keyset pagination, the same for the console's
"Next" links and the API's ``cursor``), so that a page costs the same at any depth and rows
added or removed meanwhile neither repeat nor vanish from the pages after.

A lock lives in the counters (Redis, and the database's ``counter_entry`` behind it), keyed by
a keyed hash of the username: no SQL WHERE can find it. Every lock of a username is audited as
``account.locked`` with the account and its length, so the accounts locked now are among those
with such an event whose lock has not yet run out; only those are asked of the lockout (one
counter read each, for the rows of a page), which has the last word. See docs/performance.md.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Index,
    Select,
    String,
    and_,
    func,
    literal_column,
    not_,
    or_,
    select,
    true,
    tuple_,
    union,
)
from sqlalchemy import text as sql_text

from idp.accounts.lockout import Lockout
from idp.accounts.models import Account, AccountStatus, AccountType
from idp.accounts.usernames import username_key
from idp.admin.accounts import AccountState, account_state
from idp.admin.actor import Actor
from idp.admin.roles import Permission
from idp.audit import AuditEvent
from idp.clock import Clock
from idp.db import DbSession
from idp.students.models import GuardianLink, Student

MAX_QUERY_LENGTH = 200
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
# Up to this many matches of a search are sorted by name; more are found by walking the order.
MAX_SORTED = 20_000
# How far back the audit trail is read for locks that may still run (or the district's lock
# duration, if longer); a lock's own length (the event's ``seconds``) then decides.
LOCK_LOOKBACK = timedelta(days=1)

# The expressions the indexes below are built on: a query must repeat them exactly to use them.
EMAIL = func.lower(Account.email)
USERNAME = func.lower(Account.username_key)
# Grouped as PostgreSQL prints the index back, so that Alembic finds the model and the schema alike.
FULL_NAME = func.lower(
    Account.first_name.op("||", return_type=String)(literal_column("' '")).op("||", return_type=String)(
        Account.last_name
    )
)
FIRST_NAME = func.lower(Account.first_name)
LAST_NAME = func.lower(Account.last_name)
SIS_ID = func.lower(Student.sis_id)
ORDER = (Account.last_name, Account.first_name, Account.id)

# Migration 0011_account_search makes these. The trigram ones exist on PostgreSQL only; Alembic
# does not compare expression indexes on SQLite, where a LIKE reads the table.
_TRIGRAM_OPS = {label: "gin_trgm_ops" for label in ("email", "key", "name", "sis_id")}
Index("ix_account_email_trgm", EMAIL.label("email"), postgresql_using="gin", postgresql_ops=_TRIGRAM_OPS)
Index("ix_account_username_trgm", USERNAME.label("key"), postgresql_using="gin", postgresql_ops=_TRIGRAM_OPS)
Index("ix_account_name_trgm", FULL_NAME.label("name"), postgresql_using="gin", postgresql_ops=_TRIGRAM_OPS)
Index("ix_student_sis_id_trgm", SIS_ID.label("sis_id"), postgresql_using="gin", postgresql_ops=_TRIGRAM_OPS)
Index("ix_account_first_name_lower", FIRST_NAME)
Index("ix_account_last_name_lower", LAST_NAME)
Index("ix_student_sis_id_lower", SIS_ID)
Index("ix_account_search_order", *ORDER)
# Unique so that a link can reference its student's (id, school_id) (migration 0015).
Index("ix_student_id_school_id", Student.id, Student.school_id, unique=True)
# "status = test" walks these alone, in the order, instead of 200 accounts for each test one.
Index(
    "ix_account_test_order",
    *ORDER,
    postgresql_where=Account.is_test_account,
    sqlite_where=Account.is_test_account,
)


class SearchInputError(ValueError):
    """Search input the service refuses: the views answer 400 with the message they word."""


class QueryTooLong(SearchInputError):
    def __init__(self, max_length: int) -> None:
        super().__init__(f"the search text is longer than {max_length} characters")
        self.max_length = max_length


class UnknownFilter(SearchInputError):
    def __init__(self, name: str, value: str, allowed: Sequence[str]) -> None:
        super().__init__(f"unknown {name} {value!r}; choose one of: {', '.join(allowed)}")
        self.name = name
        self.value = value
        self.allowed = tuple(allowed)


class BadCursor(SearchInputError):
    def __init__(self) -> None:
        super().__init__("the cursor is not one this search gave")


class BadLimit(SearchInputError):
    def __init__(self, maximum: int) -> None:
        super().__init__(f"the page size must be from 1 to {maximum}")
        self.maximum = maximum


SEARCHABLE_TYPES = (AccountType.PARENT, AccountType.STUDENT)


@dataclass(frozen=True)
class LinkedStudent:
    id: str  # the student row's id (the student page's URL)
    sis_id: str
    first_name: str
    last_name: str
    relationship: str


@dataclass(frozen=True)
class AccountRow:
    id: str
    # One word, the first that holds of: disabled, expired, locked, pending, active.
    state: AccountState
    type: AccountType
    email: str
    username: str
    first_name: str
    last_name: str
    # Active links to students the actor reaches, as portals order them.
    students: tuple[LinkedStudent, ...]
    # The latest sign-in (``current_login_*``; ``last_login_*`` is the one before it).
    last_login_at: datetime | None
    last_login_ip: str | None
    is_test: bool
    locked: bool


@dataclass(frozen=True)
class SearchPage:
    rows: tuple[AccountRow, ...]
    # Give it back as ``cursor`` for the next page; None on the last page.
    next_cursor: str | None


Key = tuple[str, str, str]
E = TypeVar("E", bound=enum.StrEnum)


@dataclass(frozen=True)
class _Criteria:
    text: str
    account_type: AccountType | None
    state: AccountState | None


class AccountSearch:
    def __init__(self, session: DbSession, *, clock: Clock, lockout: Lockout) -> None:
        self.session = session
        self.clock = clock
        self.lockout = lockout

    def search(
        self,
        actor: Actor,
        *,
        q: str = "",
        account_type: str | None = None,
        status: str | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> SearchPage:
        """Return one page of the accounts ``actor`` reaches that match; empty ``q``: all of them.

        Raise ``SearchInputError`` (``QueryTooLong``, ``UnknownFilter``, ``BadCursor``,
        ``BadLimit``) for input it refuses.
        """
        actor.require(Permission.VIEW)
        criteria = _Criteria(
            normalise_query(q),
            _choice("account type", account_type, AccountType, SEARCHABLE_TYPES),
            _choice("account status", status, AccountState, tuple(AccountState)),
        )
        if not 1 <= limit <= MAX_LIMIT:
            raise BadLimit(MAX_LIMIT)
        after = decode_cursor(cursor) if cursor else None
        if self.session.get_bind().dialect.name == "postgresql":
            # A page of 50 rows gains nothing from parallel workers, whose start-up doubled the
            # school admin's Show All at a million accounts (docs/performance.md). For this
            # transaction only: safe behind PgBouncer in transaction mode.
            self.session.execute(sql_text("SET LOCAL max_parallel_workers_per_gather = 0"))
        now = self.clock.now()
        may_be_locked = self._lock_candidates(now)
        if criteria.state is AccountState.LOCKED and not may_be_locked:
            return SearchPage((), None)

        kept: list[tuple[Account, bool]] = []
        # Rows the lockout turns away (locked ones under "active", say) leave the page short: read
        # on from the last row read until it is full or the matches run out.
        while len(kept) <= limit:
            wanted = limit + 1 - len(kept)
            batch = self._read(actor, criteria, now, may_be_locked, after, wanted)
            locked = self._locked(acc for acc in batch if acc.id in may_be_locked)
            kept.extend((acc, acc.id in locked) for acc in batch if _keeps(criteria.state, acc, locked))
            if len(batch) < wanted:
                break
            after = _key(batch[-1])
        page, more = kept[:limit], len(kept) > limit
        students = self._students(actor, [acc.id for acc, _ in page])
        rows = tuple(_row(acc, locked, now, students.get(acc.id, ())) for acc, locked in page)
        return SearchPage(rows, encode_cursor(_key(page[-1][0])) if more and page else None)

    def _read(
        self,
        actor: Actor,
        criteria: _Criteria,
        now: datetime,
        may_be_locked: frozenset[str],
        after: Key | None,
        limit: int,
    ) -> list[Account]:
        """Read the next ``limit`` matching accounts after ``after``, in key order."""
        where = [actor.reaches_accounts(), *_filters(criteria, now, may_be_locked)]
        if after is not None:
            where.append(tuple_(*ORDER) > tuple_(*after))
        if not criteria.text:
            return list(
                self.session.execute(select(Account).where(*where).order_by(*ORDER).limit(limit)).scalars()
            )
        by_account, by_student = _text_match(criteria.text, actor)
        matches = (by_account, Account.id.in_(by_student))
        # First the matches themselves, at most MAX_SORTED of each kind (the trigram bitmaps: cost
        # grows with the matches, not the table), sorted here. The LIMIT inside keeps PostgreSQL
        # from walking the order's index instead: it would, as the cheaper plan on paper, and
        # read the whole table for a name late in the alphabet (matches are not spread evenly
        # along an order by name).
        capped = [
            select(Account.id, Account.last_name, Account.first_name)
            .where(*where, match)
            .limit(MAX_SORTED + 1)
            .cte()
            for match in matches
        ]
        counts = [select(func.count()).select_from(cte).scalar_subquery() for cte in capped]
        both = union(*(select(cte.c.id, cte.c.last_name, cte.c.first_name) for cte in capped)).subquery()
        # The page's ids are picked among the matches alone, then their rows read by key: a join
        # of all the matches with the table would read it whole.
        first = select(both.c.id).order_by(both.c.last_name, both.c.first_name, both.c.id).limit(limit)
        found = self.session.execute(
            select(Account, *counts).where(Account.id.in_(first)).order_by(*ORDER)
        ).all()
        if not found or all(count <= MAX_SORTED for count in found[0][1:]):
            return [row[0] for row in found]
        # So many matches (a fragment like "son") that they are dense along the order: walk it.
        # One branch per index family, each ordered and limited on its own, so that each takes its
        # own best plan; an OR across the tables would read every account.
        branches = [
            select(Account.id).where(*where, match).order_by(*ORDER).limit(limit).subquery()
            for match in matches
        ]
        walked = union(*(select(branch.c.id) for branch in branches)).subquery()
        statement = select(Account).where(Account.id.in_(select(walked.c.id))).order_by(*ORDER).limit(limit)
        return list(self.session.execute(statement).scalars())

    def _lock_candidates(self, now: datetime) -> frozenset[str]:
        """Return the accounts whose audited lock may still run."""
        events = self.session.execute(
            select(AuditEvent.account_id, AuditEvent.occurred_at, AuditEvent.details).where(
                AuditEvent.name == "account.locked",
                AuditEvent.occurred_at > now - max(LOCK_LOOKBACK, self.lockout.policy.duration),
                AuditEvent.account_id.is_not(None),
            )
        ).all()
        default = self.lockout.policy.duration.total_seconds()
        return frozenset(
            account_id
            for account_id, at, details in events
            if account_id is not None and at + timedelta(seconds=_seconds(details, default)) > now
        )

    def _locked(self, accounts: Iterable[Account]) -> frozenset[str]:
        """Return which of ``accounts`` the lockout holds locked now (one counter read each)."""
        return frozenset(
            account.id
            for account in accounts
            if self.lockout.is_locked(self.lockout.user_key(account.username))
        )

    def _students(self, actor: Actor, account_ids: list[str]) -> dict[str, tuple[LinkedStudent, ...]]:
        if not account_ids:
            return {}
        rows = self.session.execute(
            select(
                GuardianLink.account_id,
                Student.id,
                Student.sis_id,
                Student.first_name,
                Student.last_name,
                GuardianLink.relationship,
            )
            .join(Student, Student.id == GuardianLink.student_id)
            .where(
                GuardianLink.account_id.in_(account_ids),
                GuardianLink.status == "active",
                actor.reaches_students(),
            )
            .order_by(Student.first_name, Student.last_name, Student.sis_id)
        ).all()
        found: dict[str, list[LinkedStudent]] = {}
        for account_id, *student in rows:
            found.setdefault(account_id, []).append(LinkedStudent(*student))
        return {account_id: tuple(students) for account_id, students in found.items()}


def normalise_query(q: str | None) -> str:
    """Return ``q`` as searched: spaces collapsed and trimmed; raise ``QueryTooLong``."""
    if not q:
        return ""
    if len(q) > MAX_QUERY_LENGTH:
        raise QueryTooLong(MAX_QUERY_LENGTH)
    # The web layer already turns NUL and undecodable bytes into U+FFFD; a caller without it must
    # not reach PostgreSQL with either (it refuses NUL, and the driver lone surrogates).
    q = q.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return " ".join(q.split())


# pg_trgm makes trigrams of runs of letters and digits only: a pattern without a run of 3 has none,
# and its GIN scan would read the whole index.
_TRIGRAM_RUN = re.compile(r"[^\W_]{3}")
_ADDRESS = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+\Z")


def _text_match(text: str, actor: Actor) -> tuple[ColumnElement[bool], Select[Any]]:
    """Return the match on the account's own columns, and the accounts matched by a student ID."""
    linked = (
        select(GuardianLink.account_id)
        .join(Student, Student.id == GuardianLink.student_id)
        .where(GuardianLink.status == "active", actor.reaches_students())
    )
    if _ADDRESS.match(text):
        # A whole address means that address (btree ``ix_account_email_lower``): as a substring it
        # would also find "mada@…" for "ada@…", and read the long trigram lists of "com" and "org".
        whole = func.lower(text)
        on_account = or_(whole == EMAIL, Account.username_key == username_key(text))
        return on_account, linked.where(whole == SIS_ID)
    if _TRIGRAM_RUN.search(text):
        pattern = func.lower("%" + _escape_like(text) + "%")
        key_pattern = func.lower("%" + _escape_like(username_key(text)) + "%")
        on_account = or_(
            EMAIL.like(pattern, escape="\\"),
            USERNAME.like(key_pattern, escape="\\"),
            FULL_NAME.like(pattern, escape="\\"),
        )
        return on_account, linked.where(SIS_ID.like(pattern, escape="\\"))
    whole = func.lower(text)
    on_account = or_(
        whole == EMAIL,
        Account.username_key == username_key(text),
        whole == FIRST_NAME,
        whole == LAST_NAME,
    )
    return on_account, linked.where(whole == SIS_ID)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filters(criteria: _Criteria, now: datetime, may_be_locked: frozenset[str]) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if criteria.account_type is not None:
        where.append(Account.type == criteria.account_type)
    expired = and_(Account.expires_at.is_not(None), Account.expires_at <= now)
    disabled = Account.status == AccountStatus.DISABLED
    match criteria.state:
        case AccountState.DISABLED:
            where.append(disabled)
        case AccountState.EXPIRED:
            where += [not_(disabled), expired]
        case AccountState.LOCKED:
            # The candidates only: the lockout decides among them (``_keeps``).
            where += [not_(disabled), not_(expired), Account.id.in_(may_be_locked)]
        case AccountState.PENDING:
            where += [Account.status == AccountStatus.PENDING, not_(expired)]
        case AccountState.ACTIVE:
            where += [Account.status == AccountStatus.CONFIRMED, not_(expired)]
        case AccountState.TEST:
            where.append(Account.is_test_account == true())
        case None:
            pass
    return where


def _keeps(state: AccountState | None, account: Account, locked: frozenset[str]) -> bool:
    """Whether a row the SQL found stays, now that the lockout has said which are locked."""
    if state is AccountState.LOCKED:
        return account.id in locked
    if state in (AccountState.ACTIVE, AccountState.PENDING):
        return account.id not in locked
    return True


def _row(account: Account, locked: bool, now: datetime, students: tuple[LinkedStudent, ...]) -> AccountRow:
    return AccountRow(
        id=account.id,
        state=account_state(account, now=now, locked=locked),
        type=account.type,
        email=account.email,
        username=account.username,
        first_name=account.first_name,
        last_name=account.last_name,
        students=students,
        last_login_at=account.current_login_at,
        last_login_ip=account.current_login_ip,
        is_test=account.is_test_account,
        locked=locked,
    )


def _choice(name: str, value: str | None, kind: type[E], allowed: Sequence[E]) -> E | None:
    if not value:
        return None
    try:
        chosen = kind(value.strip().lower())
    except ValueError:
        chosen = None
    if chosen is None or chosen not in allowed:
        raise UnknownFilter(name, value[:40], [choice.value for choice in allowed])
    return chosen


def _seconds(details: Any, default: float) -> float:
    value = details.get("seconds") if isinstance(details, dict) else None
    return float(value) if isinstance(value, int | float) else default


def _key(account: Account) -> Key:
    return (account.last_name, account.first_name, account.id)


def encode_cursor(key: Key) -> str:
    """Return the opaque cursor naming the row ``key``: the next page starts after it."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Key:
    """Return the row key ``cursor`` names; raise ``BadCursor`` for anything this search did not give."""
    if len(cursor) > 1000:
        raise BadCursor()
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise BadCursor() from error
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(part, str) and "\x00" not in part and len(part) <= 100 for part in value)
    ):
        raise BadCursor()
    return (value[0], value[1], value[2])


# Used by the views' type and status menus, in this order.
TYPE_CHOICES: tuple[str, ...] = tuple(kind.value for kind in SEARCHABLE_TYPES)
STATE_CHOICES: tuple[str, ...] = tuple(state.value for state in AccountState)
