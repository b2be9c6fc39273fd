"""Account search without HTTP: each field, whole and partial, filters, pages, scope, bad input."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update

from idp.accounts.models import Account, AccountStatus, AccountType
from idp.accounts.service import InvalidCredentials, SignInContext
from idp.admin.actor import Actor
from idp.admin.models import StaffRole
from idp.admin.search import (
    MAX_QUERY_LENGTH,
    AccountState,
    BadCursor,
    BadLimit,
    QueryTooLong,
    SearchPage,
    UnknownFilter,
    encode_cursor,
)
from idp.clock import FrozenClock
from idp.extensions import db
from idp.students.models import Student
from idp.web.context import services

DISTRICT = Actor.staff("staff-1", StaffRole.DISTRICT_ADMIN)


def search(actor: Actor = DISTRICT, **criteria: Any) -> SearchPage:
    return services().account_search().search(actor, **criteria)


def ids(page: SearchPage) -> list[str]:
    return [row.id for row in page.rows]


@pytest.fixture
def family(make_account: Callable[..., Account], make_student: Callable[..., Student]) -> dict[str, Any]:
    """Ada (parent of Byron, S-2041), Grace (parent of Eve at another school) and a student account."""
    ada = make_account(
        username="ada.l", email="Ada.Lovelace@Example.org", first_name="Ada", last_name="Lovelace"
    )
    grace = make_account(
        username="ghopper", email="grace@navy.example", first_name="Grace", last_name="Hopper"
    )
    byron = make_student(sis_id="S-2041", first_name="Byron", last_name="Lovelace", school_code="LES")
    eve = make_student(sis_id="S-3077", first_name="Eve", last_name="Hopper", school_code="HHS")
    kid = make_account(
        username="eve.h",
        email="eve@student.example",
        first_name="Eve",
        last_name="Hopper",
        account_type=AccountType.STUDENT,
    )
    guardianship = services().guardianship()
    guardianship.link(ada, byron, "Mother")
    guardianship.link(grace, eve, "Guardian")
    guardianship.link(kid, eve, "Self")
    db.session.commit()
    return {"ada": ada, "grace": grace, "kid": kid, "byron": byron, "eve": eve}


def test_each_field_finds_the_account_whole_and_in_part(family: dict[str, Any]) -> None:
    ada, grace, kid = family["ada"], family["grace"], family["kid"]
    assert ids(search(q="ada.lovelace@example.org")) == [ada.id]  # email, any case
    assert ids(search(q="navy.exam")) == [grace.id]  # part of an email
    assert ids(search(q="GHOPP")) == [grace.id]  # part of a username
    assert ids(search(q="ada lovel")) == [ada.id]  # first and last name together
    assert ids(search(q="hopper")) == [kid.id, grace.id]  # last name: Eve Hopper, Grace Hopper
    assert ids(search(q="s-2041")) == [ada.id]  # a student ID number
    assert ids(search(q="3077")) == [kid.id, grace.id]  # part of one: the guardian and the student
    assert ids(search(q="Turing")) == []
    assert ids(search(q="")) == [kid.id, grace.id, ada.id]  # Show All: by last, then first name

    row = search(q="S-2041").rows[0]
    assert (row.state, row.type, row.email, row.username) == (
        AccountState.ACTIVE,
        AccountType.PARENT,
        "Ada.Lovelace@Example.org",
        "ada.l",
    )
    assert [(s.sis_id, s.first_name, s.last_name, s.relationship) for s in row.students] == [
        ("S-2041", "Byron", "Lovelace", "Mother")
    ]


def test_fewer_than_three_letters_in_a_row_match_whole_values_only(
    make_account: Callable[..., Account],
) -> None:
    li = make_account(username="mli", email="m@li.io", first_name="Mei", last_name="Li")
    make_account(username="lin", email="lin@example.org", first_name="Ana", last_name="Lindqvist")
    assert ids(search(q="li")) == [li.id]  # last name "Li", not "Lindqvist"
    assert ids(search(q="M@LI.IO")) == [li.id]  # no run of 3: the whole address, any case
    assert ids(search(q="m@li.i")) == []


def test_a_whole_address_finds_that_address_and_part_of_one_finds_more(
    family: dict[str, Any], make_account: Callable[..., Account]
) -> None:
    grandma = make_account(email="grandada.lovelace@example.org", first_name="Augusta", last_name="Byron")
    assert ids(search(q="Ada.Lovelace@example.org")) == [family["ada"].id]
    assert ids(search(q="ada.lovelace@example")) == [grandma.id, family["ada"].id]
    assert ids(search(q="ada.lovelace@")) == [grandma.id, family["ada"].id]
    email_as_username = make_account(username="pat@home.example", email="pat@work.example")
    assert ids(search(q="PAT@home.example")) == [email_as_username.id]


def test_like_wildcards_and_backslashes_are_literal(make_account: Callable[..., Account]) -> None:
    odd = make_account(username="under_score", email="100%sure@example.org", last_name="Back\\slash")
    make_account(username="underXscore", email="1000sure@example.org", last_name="Backslash")
    assert ids(search(q="100%sure")) == [odd.id]
    assert ids(search(q="under_sc")) == [odd.id]
    assert ids(search(q="back\\sl")) == [odd.id]
    assert ids(search(q="%%%")) == []
    assert ids(search(q="___")) == []


def test_filters_pick_each_state_type_and_test_accounts(
    family: dict[str, Any], make_account: Callable[..., Account], clock: FrozenClock
) -> None:
    pending = make_account(status=AccountStatus.PENDING, last_name="Pending")
    disabled = make_account(last_name="Disabled")
    disabled.status = AccountStatus.DISABLED
    expired = make_account(last_name="Expired")
    expired.expires_at = clock.now()
    later = make_account(last_name="Later")
    later.expires_at, later.is_test_account = clock.now() + timedelta(days=1), True
    db.session.commit()

    assert ids(search(status="disabled")) == [disabled.id]
    assert ids(search(status="expired")) == [expired.id]
    assert ids(search(status="pending")) == [pending.id]
    assert ids(search(status="test")) == [later.id]
    active = ids(search(status="active"))
    assert later.id in active and family["ada"].id in active
    assert {pending.id, disabled.id, expired.id}.isdisjoint(active)
    assert ids(search(account_type="student")) == [family["kid"].id]
    assert ids(search(q="hopper", account_type="Parent")) == [family["grace"].id]
    assert [row.state for row in search(q="Expired").rows] == [AccountState.EXPIRED]


def test_a_locked_account_is_listed_as_locked_until_unlocked(family: dict[str, Any]) -> None:
    ada = family["ada"]
    signin = services().signin()
    for _ in range(services().lockout.policy.threshold):
        with pytest.raises(InvalidCredentials):
            signin.sign_in("ada.l", "wrong password", SignInContext(), browser_session=None)

    assert ids(search(status="locked")) == [ada.id]
    assert ada.id not in ids(search(status="active"))
    row = search(q="lovelace").rows[0]
    assert (row.state, row.locked) == (AccountState.LOCKED, True)

    services().accounts().unlock("ada.l")
    db.session.commit()
    assert ids(search(status="locked")) == []
    assert search(q="lovelace").rows[0].state is AccountState.ACTIVE
    assert ada.id in ids(search(status="active"))


def test_pages_follow_the_cursor_without_repeats_or_gaps(make_account: Callable[..., Account]) -> None:
    made = [make_account(first_name=first, last_name="Same") for first in ("Ann", "Bea", "Cy", "Di", "Ed")]
    first = search(q="same", limit=2)
    assert ids(first) == [made[0].id, made[1].id] and first.next_cursor

    # Rows added before the cursor's place, and removed after it, move no page boundary.
    make_account(first_name="Aaron", last_name="Same")
    second = search(q="same", limit=2, cursor=first.next_cursor)
    assert ids(second) == [made[2].id, made[3].id]
    third = search(q="same", limit=2, cursor=second.next_cursor)
    assert (ids(third), third.next_cursor) == ([made[4].id], None)


def test_more_matches_than_are_sorted_are_found_along_the_order(
    family: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("idp.admin.search.MAX_SORTED", 1)
    first = search(q="hopper", limit=1)
    assert ids(first) == [family["kid"].id]
    assert ids(search(q="hopper", cursor=first.next_cursor)) == [family["grace"].id]
    assert ids(search(q="3077")) == [family["kid"].id, family["grace"].id]


def test_a_school_admin_sees_only_their_schools_and_nobody_sees_staff(
    family: dict[str, Any], make_account: Callable[..., Account], make_student: Callable[..., Student]
) -> None:
    staff = make_account(account_type=AccountType.STAFF, last_name="Lovelace", email="staff@example.org")
    both = make_account(first_name="Two", last_name="Schools")
    services().guardianship().link(both, family["byron"], "Father")
    services().guardianship().link(both, family["eve"], "Father")
    db.session.commit()
    school_admin = Actor.staff("staff-2", StaffRole.SCHOOL_ADMIN, frozenset({family["byron"].school_id}))
    help_desk = Actor.staff("staff-3", StaffRole.HELP_DESK)

    assert ids(search(school_admin)) == [family["ada"].id, both.id]
    reached = select(Account.id).where(school_admin.reaches_accounts())
    assert set(db.session.execute(reached).scalars()) == {family["ada"].id, both.id}
    assert ids(search(school_admin, q="S-3077")) == []  # another school's student finds nothing
    assert ids(search(school_admin, q="grace@navy.example")) == []
    row = search(school_admin, q="schools").rows[0]
    assert [student.sis_id for student in row.students] == ["S-2041"]  # not the other school's
    assert staff.id not in ids(search(help_desk, q="lovelace")) + ids(search())
    assert ids(search(help_desk, q="lovelace")) == [family["ada"].id]


def test_a_student_who_moves_school_takes_their_families_along(family: dict[str, Any]) -> None:
    byron, eve = family["byron"], family["eve"]
    here = Actor.staff("staff-2", StaffRole.SCHOOL_ADMIN, frozenset({byron.school_id}))
    there = Actor.staff("staff-3", StaffRole.SCHOOL_ADMIN, frozenset({eve.school_id}))
    assert family["ada"].id in ids(search(here)) and family["ada"].id not in ids(search(there))

    # The links' copy of the school follows the student's (ON UPDATE CASCADE), whoever moves them.
    db.session.execute(update(Student).where(Student.id == byron.id).values(school_id=eve.school_id))
    db.session.commit()
    db.session.expire_all()
    assert family["ada"].id not in ids(search(here)) and family["ada"].id in ids(search(there))
    reached = select(Account.id).where(there.reaches_accounts())
    assert family["ada"].id in set(db.session.execute(reached).scalars())


def test_bad_input_is_refused_with_a_named_error(app: Any) -> None:
    with pytest.raises(QueryTooLong):
        search(q="a" * (MAX_QUERY_LENGTH + 1))
    unknown: list[dict[str, Any]] = [
        {"account_type": "staff"},
        {"account_type": "teacher"},
        {"status": "asleep"},
    ]
    for criteria in unknown:
        with pytest.raises(UnknownFilter):
            search(**criteria)
    for cursor in ("not a cursor", "W10", encode_cursor(("a", "b", "c"))[:-2], "x" * 2000):
        with pytest.raises(BadCursor):
            search(cursor=cursor)
    for limit in (0, 101):
        with pytest.raises(BadLimit):
            search(limit=limit)
    # What the web layer already replaces, and the driver would refuse, ends in no match.
    assert ids(search(q="a\x00b\udcff" * 10)) == []
    assert ids(search(q="a" * MAX_QUERY_LENGTH)) == []


def test_the_row_shows_the_latest_sign_in(family: dict[str, Any]) -> None:
    signin = services().signin()
    signin.sign_in(
        "ada.l", "correct-horse-battery-staple", SignInContext(ip_address="10.0.0.1"), browser_session=None
    )
    signin.sign_in(
        "ada.l", "correct-horse-battery-staple", SignInContext(ip_address="10.0.0.2"), browser_session=None
    )
    row = search(q="ada.l").rows[0]
    assert row.last_login_ip == "10.0.0.2" and row.last_login_at == family["ada"].current_login_at


@pytest.fixture
def statements(app: Any) -> Iterator[list[tuple[str, Any]]]:
    """The SQL the test's searches run, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.engine, "before_cursor_execute", record)


@pytest.mark.parametrize(
    ("q", "indexes"),
    [
        (
            "lovelace",
            {
                "ix_account_email_trgm",
                "ix_account_username_trgm",
                "ix_account_name_trgm",
                "ix_student_sis_id_trgm",
            },
        ),
        ("ada.lovelace@example.org", {"ix_account_email_lower", "ix_student_sis_id_lower"}),
        (
            "li",
            {
                "ix_account_email_lower",
                "ix_account_first_name_lower",
                "ix_account_last_name_lower",
                "ix_student_sis_id_lower",
            },
        ),
    ],
)
def test_postgresql_answers_from_the_indexes(
    family: dict[str, Any], statements: list[tuple[str, Any]], q: str, indexes: set[str]
) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("trigram indexes are PostgreSQL's")
    search()  # the lock candidates' read, before the search is recorded
    statements.clear()
    search(q=q)
    sql, parameters = next((s, p) for s, p in statements if "FROM account" in s and "UNION" in s)
    connection = db.session.connection()
    # Tables this small are read whole, or along the order's index: forbid both, and the plan
    # shows whether the expressions the search writes are the ones indexed.
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off")
    plan = "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {sql}", parameters))
    connection.exec_driver_sql("SET LOCAL enable_seqscan = on; SET LOCAL enable_indexscan = on")
    assert {index for index in indexes if index in plan} == indexes, plan
