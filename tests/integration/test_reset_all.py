"""Reset all portal account passwords: the count, the run in batches, resuming, and the worker."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from idp.accounts.models import Account, AccountType
from idp.accounts.service import PasswordChangeRequired, SignInContext
from idp.admin.actor import Actor, NotPermitted
from idp.admin.models import PasswordResetRun, StaffRole
from idp.admin.reset_all import PasswordResets, ResetAlreadyRunning
from idp.audit import AuditEvent
from idp.clock import FrozenClock
from idp.extensions import db
from idp.web.context import services
from idp.worker import Worker
from tests.conftest import PASSWORD

DISTRICT = Actor.staff("staff-district", StaffRole.DISTRICT_ADMIN)


def resets() -> PasswordResets:
    return services().password_resets()


def flagged() -> list[str]:
    return list(
        db.session.execute(
            select(Account.username).where(Account.must_change_password.is_(True)).order_by(Account.username)
        ).scalars()
    )


@pytest.fixture
def portal_accounts(make_account: Callable[..., Account]) -> list[Account]:
    make_account(username="staffer", account_type=AccountType.STAFF)
    return [make_account(username=f"parent{n}") for n in range(4)] + [
        make_account(username="student0", account_type=AccountType.STUDENT)
    ]


def test_only_a_whole_district_admin_may_reset_all(portal_accounts: list[Account]):
    refused = [
        Actor.staff("staff-helpdesk", StaffRole.HELP_DESK),
        Actor.staff("staff-school", StaffRole.SCHOOL_ADMIN, frozenset({"school-a"})),
        Actor.client("api", "admin:write", frozenset({"school-a"})),
        Actor.client("api", "admin:read"),
    ]

    for actor in refused:
        with pytest.raises(NotPermitted):
            resets().preview(actor)
        with pytest.raises(NotPermitted):
            resets().start(actor)
    assert resets().preview(Actor.client("api", "admin:write")) == 5
    assert db.session.execute(select(PasswordResetRun)).first() is None


def test_a_run_flags_the_portal_accounts_batch_by_batch_and_resumes(
    portal_accounts: list[Account], make_account: Callable[..., Account], clock: FrozenClock
):
    assert resets().preview(DISTRICT) == 5
    run = resets().start(DISTRICT)
    clock.advance(timedelta(seconds=1))
    make_account(username="latecomer")  # created after the run started: it chose its password since

    assert resets().run_batch(run, size=2) is True
    assert (run.touched, len(flagged())) == (2, 2)
    # A new service over the same row: what a restarted worker does.
    assert resets().run_batch(db.session.get(PasswordResetRun, run.id), size=2) is True
    assert resets().run_batch(run, size=2) is False
    assert resets().run_batch(run, size=2) is False

    assert (run.touched, run.total, run.finished_at) == (5, 5, clock.now())
    assert flagged() == ["parent0", "parent1", "parent2", "parent3", "student0"]
    started, finished = (
        db.session.execute(
            select(AuditEvent).where(AuditEvent.name == f"password_reset_run.{name}")
        ).scalar_one()
        for name in ("started", "finished")
    )
    assert started.details == {"actor": "staff:staff-district", "run_id": run.id, "total": 5}
    assert finished.details["touched"] == 5


def test_one_run_at_a_time(portal_accounts: list[Account]):
    run = resets().start(DISTRICT)

    with pytest.raises(ResetAlreadyRunning) as refused:
        resets().start(DISTRICT)

    assert refused.value.run.id == run.id


def test_the_worker_finishes_the_run_and_the_next_sign_in_must_change_the_password(
    portal_accounts: list[Account],
):
    resets().start(DISTRICT)

    Worker(services(), report=lambda line: None).run_once()

    assert db.session.execute(select(PasswordResetRun.finished_at)).scalar_one() is not None
    with pytest.raises(PasswordChangeRequired):
        services().accounts().authenticate("parent0", PASSWORD, SignInContext())
