"""Usernames are unique up to case, width and look-alike characters (UTS #39 skeleton)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from idp.accounts.models import Account, AccountType
from idp.accounts.registration import Problem, Problems, check_username
from idp.accounts.service import UsernameTaken
from idp.accounts.skeleton import confusable_skeleton
from idp.extensions import db
from idp.web.context import services

LOOK_ALIKES = [
    ("john", "j\u043ehn"),  # Cyrillic о
    ("john", "JOHN"),
    ("john", "ｊｏｈｎ"),  # fullwidth
    ("john", "j0hn"),  # digit zero
    ("paypal", "p\u0430yp\u0430l"),  # Cyrillic а
    ("mary", "rnary"),  # r + n looks like m
    ("lan", "Ian"),  # capital I and small l
    ("dana.rivera", " Dana.Rivera "),
]


@pytest.mark.parametrize(("first", "second"), LOOK_ALIKES)
def test_look_alikes_share_a_skeleton(first, second):
    assert confusable_skeleton(first) == confusable_skeleton(second)


@pytest.mark.parametrize(("first", "second"), [("john", "joan"), ("jöhn", "john"), ("ana", "anna")])
def test_different_names_have_different_skeletons(first, second):
    assert confusable_skeleton(first) != confusable_skeleton(second)


@pytest.mark.parametrize(("first", "second"), LOOK_ALIKES)
def test_a_look_alike_of_a_taken_username_is_refused(make_account, first, second):
    make_account(username=first)

    with pytest.raises(UsernameTaken):
        make_account(username=second)


@pytest.mark.parametrize(("first", "second"), LOOK_ALIKES[:3])
def test_the_registration_check_reports_a_look_alike_as_taken(make_account, first, second):
    make_account(username=first)
    problems = Problems()

    check_username(problems, "username", second, services().accounts())

    assert problems.fields == {"username": [Problem.USERNAME_TAKEN]}


def test_an_account_may_keep_its_own_username_in_another_case(make_account):
    account = make_account(username="dana")
    problems = Problems()

    check_username(problems, "username", "DANA", services().accounts(), except_account_id=account.id)

    assert not problems


def test_the_database_refuses_two_rows_with_one_skeleton(make_account):
    first = make_account(username="john")
    twin = Account(
        type=AccountType.PARENT,
        username="j\u043ehn",
        username_key="j\u043ehn",
        username_skeleton=first.username_skeleton,
        email="x@example.org",
        first_name="X",
        last_name="Y",
        password_hash="x",
    )
    db.session.add(twin)

    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("", Problem.REQUIRED),
        ("   ", Problem.REQUIRED),
        ("two words", Problem.USERNAME_INVALID),
        ("tab\there", Problem.USERNAME_INVALID),
        ("zero\u200bwidth", Problem.USERNAME_INVALID),
        ("smile\U0001f600", Problem.USERNAME_INVALID),
        ("x" * 65, Problem.TOO_LONG),
        ("x" * 10_000, Problem.TOO_LONG),
    ],
)
def test_usernames_someone_chooses_must_be_plain(app, typed, problem):
    problems = Problems()

    check_username(problems, "username", typed, services().accounts())

    assert problems.fields == {"username": [problem]}


@pytest.mark.parametrize("typed", ["dana.rivera", "o'brien", "ana-lucía", "李小龙", "user+school@district"])
def test_letters_of_any_script_and_a_little_punctuation_are_allowed(app, typed):
    problems = Problems()

    check_username(problems, "username", typed, services().accounts())

    assert not problems
