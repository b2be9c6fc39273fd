"""ClaimsBuilder.for_scope: exactly the claims DESIGN.md's table releases for each scope."""

from __future__ import annotations

from datetime import timedelta

import pytest

from idp.accounts.models import Account, AccountStatus, AccountType
from idp.accounts.service import SignInContext
from idp.extensions import db
from idp.web.context import services
from tests.conftest import PASSWORD

STUDENT_CLAIMS = {"student_ids", "students", "primary_student_id"}


def claims(account: Account, scope: str) -> dict:
    return services().claims().for_scope(account, scope)


def sign_in(account: Account) -> Account:
    signed_in = services().signin().sign_in(account.username, PASSWORD, SignInContext(), browser_session=None)
    db.session.expire_all()
    return signed_in.account


@pytest.fixture
def rivera_family(make_account, make_student):
    """Dana, mother of Zoe (linked first, so primary) and Adam."""
    dana = make_account(
        username="dana.rivera", first_name="Dana", last_name="Rivera", email="dana@example.org"
    )
    schools = services().schools()
    schools.create(code="WMS", name="Washington Middle School")
    schools.create(code="LES", name="Lincoln Elementary School")
    zoe = make_student(sis_id="100234", first_name="Zoe", last_name="Rivera", school_code="WMS")
    adam = make_student(sis_id="100235", first_name="Adam", last_name="Rivera", school_code="LES")
    guardianship = services().guardianship()
    guardianship.link(dana, zoe, "mother")
    guardianship.link(dana, adam, "Mother")
    db.session.commit()
    return dana


def test_openid_alone_releases_only_sub(rivera_family):
    assert claims(rivera_family, "openid") == {"sub": rivera_family.id}


def test_sub_is_the_account_id_never_the_username(rivera_family):
    released = claims(rivera_family, "openid profile email students")

    assert released["sub"] == rivera_family.id
    assert released["sub"] != rivera_family.username


def test_profile_releases_names_username_and_account_type(rivera_family):
    assert claims(rivera_family, "openid profile") == {
        "sub": rivera_family.id,
        "name": "Dana Rivera",
        "given_name": "Dana",
        "family_name": "Rivera",
        "preferred_username": "dana.rivera",
        "account_type": "parent",
    }


def test_profile_releases_locale_once_chosen(rivera_family):
    rivera_family.locale = "es"

    assert claims(rivera_family, "openid profile")["locale"] == "es"


def test_email_releases_address_and_verification(rivera_family):
    assert claims(rivera_family, "openid email") == {
        "sub": rivera_family.id,
        "email": "dana@example.org",
        "email_verified": True,
    }


def test_pending_account_email_is_not_verified(make_account):
    account = make_account(status=AccountStatus.PENDING)

    assert claims(account, "openid email")["email_verified"] is False


def test_students_releases_ids_objects_and_primary_student(rivera_family):
    assert claims(rivera_family, "openid students") == {
        "sub": rivera_family.id,
        "student_ids": ["100235", "100234"],  # Adam before Zoe: ordered as the tabs are
        "students": [
            {
                "id": "100235",
                "given_name": "Adam",
                "family_name": "Rivera",
                "school_id": "LES",
                "school_name": "Lincoln Elementary School",
                "relationship": "Mother",
            },
            {
                "id": "100234",
                "given_name": "Zoe",
                "family_name": "Rivera",
                "school_id": "WMS",
                "school_name": "Washington Middle School",
                "relationship": "Mother",
            },
        ],
        "primary_student_id": "100234",  # the first linked, as a school-system id
    }


def test_students_scope_without_links_releases_empty_lists(make_account):
    account = make_account()

    assert claims(account, "openid students") == {"sub": account.id, "student_ids": [], "students": []}


@pytest.mark.parametrize("scope", ["openid", "openid profile email", "openid profile email offline_access"])
def test_no_student_claims_without_the_students_scope(rivera_family, scope):
    assert not STUDENT_CLAIMS & set(claims(rivera_family, scope))


def test_all_scopes_together_release_the_union(rivera_family):
    released = set(claims(rivera_family, "openid profile email students"))

    assert released == {
        "sub",
        "name",
        "given_name",
        "family_name",
        "preferred_username",
        "account_type",
        "email",
        "email_verified",
        "student_ids",
        "students",
        "primary_student_id",
    }


def test_unknown_scopes_release_nothing(rivera_family):
    assert claims(rivera_family, "openid grades address") == {"sub": rivera_family.id}


def test_student_account_releases_its_own_record_as_self(make_account, make_student):
    account = make_account(account_type=AccountType.STUDENT, first_name="Zoe", last_name="Rivera")
    record = make_student(sis_id="100234", first_name="Zoe", last_name="Rivera", school_code="WMS")
    services().guardianship().link(account, record, "")
    db.session.commit()

    released = claims(account, "openid profile students")

    assert released["account_type"] == "student"
    assert released["students"] == [
        {
            "id": "100234",
            "given_name": "Zoe",
            "family_name": "Rivera",
            "school_id": "WMS",
            "school_name": "WMS",  # created by ``students create``: named by its code
            "relationship": "Self",
        }
    ]
    assert released["primary_student_id"] == "100234"


def test_last_login_at_is_absent_at_first_sign_in_and_the_previous_one_after(rivera_family, clock):
    first_at = clock.now()
    account = sign_in(rivera_family)

    assert "last_login_at" not in claims(account, "openid profile")

    clock.advance(timedelta(days=2, seconds=17))
    account = sign_in(account)

    last_login_at = claims(account, "openid profile")["last_login_at"]
    assert type(last_login_at) is int
    assert last_login_at == int(first_at.timestamp())
