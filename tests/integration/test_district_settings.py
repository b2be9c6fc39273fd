"""District options and password requirements as the console changes them (idp.admin.district_settings):
the CLI's data, the district admin's alone, audited with the actor, all or nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from idp.accounts.lockout import LockedOut
from idp.accounts.models import Account
from idp.accounts.password_policy import DepartureRule, UnknownSchool
from idp.accounts.policy_models import DistrictOption, PasswordPolicyRecord
from idp.accounts.service import InvalidCredentials, SignInContext
from idp.admin.actor import Actor, NotPermitted
from idp.admin.district_settings import DistrictSettings, SettingRefused
from idp.admin.models import StaffRole
from idp.audit import AuditEvent
from idp.extensions import db
from idp.students.models import Student
from idp.web.context import services
from tests.conftest import PASSWORD

DISTRICT_ADMIN = Actor.staff("a" * 32, StaffRole.DISTRICT_ADMIN)
HOME = SignInContext(ip_address="203.0.113.7")


def settings() -> DistrictSettings:
    return services().district_settings()


def events(name: str) -> list[dict[str, Any]]:
    db.session.rollback()
    return [
        event.details
        for event in db.session.execute(select(AuditEvent).where(AuditEvent.name == name)).scalars()
    ]


def test_changed_options_are_the_clis_data_with_one_audit_event_each(app: Flask) -> None:
    settings().change_options(
        DISTRICT_ADMIN, allow_password_change=False, allow_email_change=True, require_email_verification=True
    )

    current = services().district_options().current()  # what ``idp district show`` reads
    assert (current.allow_password_change, current.allow_email_change) == (False, True)
    assert current.require_email_verification is True
    # allow_email_change was already true: unchanged options are neither stored nor audited.
    assert sorted((d["option"], d["value"], d["actor"]) for d in events("district_option.changed")) == [
        ("allow_password_change", False, DISTRICT_ADMIN.label),
        ("require_email_verification", True, DISTRICT_ADMIN.label),
    ]


def test_the_lockout_the_district_sets_is_the_one_sign_in_uses(
    app: Flask, make_account: Callable[..., Account]
) -> None:
    make_account(username="dana")
    settings().change_options(DISTRICT_ADMIN, lockout_threshold=2, lockout_seconds=120)

    accounts = services().accounts()
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            accounts.authenticate("dana", "wrong", HOME)
    with pytest.raises(LockedOut) as locked:
        accounts.authenticate("dana", PASSWORD, HOME)

    assert locked.value.minutes == 2
    assert sorted((d["option"], d["value"]) for d in events("district_option.changed")) == [
        ("lockout_seconds", 120),
        ("lockout_threshold", 2),
    ]


def test_a_lockout_out_of_bounds_is_refused_and_nothing_is_written(app: Flask) -> None:
    with pytest.raises(SettingRefused, match=r"^the lockout threshold must be 1 to 100 failed sign-ins$"):
        settings().change_options(DISTRICT_ADMIN, allow_email_change=False, lockout_threshold=101)
    with pytest.raises(SettingRefused, match=r"^the lockout must last 60 to 86400 seconds$"):
        settings().change_options(DISTRICT_ADMIN, lockout_seconds=True)

    assert db.session.execute(select(DistrictOption)).first() is None
    assert services().lockout.policy.threshold == services().settings.lockout_threshold


def test_a_schools_policy_is_set_from_the_district_default_and_audited(
    app: Flask, make_student: Callable[..., Student]
) -> None:
    make_student(school_code="LES")
    settings().set_policy(DISTRICT_ADMIN, None, history_count=3)
    rules = settings().set_policy(DISTRICT_ADMIN, "LES", require_special=True)

    assert rules.history_count == 3 and rules.require_special
    assert [d.rule for d in rules.departures()] == [DepartureRule.REQUIRE_SPECIAL]
    assert [(d["school"], d["actor"]) for d in events("password_policy.changed")] == [
        ("district", DISTRICT_ADMIN.label),
        ("LES", DISTRICT_ADMIN.label),
    ]
    default, schools = settings().school_policies(DISTRICT_ADMIN)
    assert default.history_count == 3
    assert [(s.code, s.own, s.rules.require_special) for s in schools] == [("LES", True, True)]

    settings().reset_policy(DISTRICT_ADMIN, "LES")
    assert settings().policy(DISTRICT_ADMIN, "LES").own is False
    assert [d["actor"] for d in events("password_policy.removed")] == [DISTRICT_ADMIN.label]


def test_a_refused_rule_says_what_the_cli_says_and_writes_nothing(app: Flask) -> None:
    with pytest.raises(SettingRefused, match=r"^the minimum length must be 8 to 256$"):
        settings().set_policy(DISTRICT_ADMIN, None, min_length=4, require_special=True)
    with pytest.raises(UnknownSchool):
        settings().set_policy(DISTRICT_ADMIN, "NOPE", require_special=True)

    assert db.session.execute(select(PasswordPolicyRecord)).first() is None
    assert events("password_policy.changed") == []


@pytest.mark.parametrize("role", [StaffRole.HELP_DESK, StaffRole.SCHOOL_ADMIN])
def test_only_a_district_admin_changes_options_and_policies(app: Flask, role: StaffRole) -> None:
    actor = Actor.staff("b" * 32, role)
    for attempt in (
        lambda: settings().current(actor),
        lambda: settings().change_options(actor, allow_password_change=False),
        lambda: settings().school_policies(actor),
        lambda: settings().set_policy(actor, None, require_special=True),
    ):
        with pytest.raises(NotPermitted):
            attempt()

    assert db.session.execute(select(DistrictOption)).first() is None
    assert db.session.execute(select(PasswordPolicyRecord)).first() is None
