"""AccountService.authenticate with a lockout, on SQLite and PostgreSQL, without HTTP."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask

from idp.accounts.devices import TrustedDevice
from idp.accounts.lockout import LockedOut, Lockout
from idp.accounts.models import Account
from idp.accounts.service import AccountService, InvalidCredentials, SignInContext
from idp.clock import FrozenClock
from idp.counters.memory import MemoryCounters
from idp.counters.store import Keys
from idp.extensions import db
from idp.policy import LockoutPolicy
from idp.web.context import services
from tests.conftest import PASSWORD
from tests.integration.helpers import audit_names
from tests.integration.test_authentication import CountingHasher

HOME = SignInContext(ip_address="203.0.113.7")
POLICY = LockoutPolicy(threshold=3, duration=timedelta(minutes=5))


@pytest.fixture
def hasher(app: Flask) -> CountingHasher:
    return CountingHasher(services().hasher)


@pytest.fixture
def service(hasher: CountingHasher, clock: FrozenClock) -> AccountService:
    lockout = Lockout(MemoryCounters(clock), Keys.derive("idp:", "secret"), POLICY)
    return AccountService(db.session, hasher=hasher, clock=clock, lockout=lockout)  # type: ignore[arg-type]


def test_locked_username_is_refused_before_any_argon2_run(
    service: AccountService, hasher: CountingHasher, make_account: Callable[..., Account]
) -> None:
    make_account(username="dana")
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            service.authenticate("dana", "wrong", HOME)
    assert hasher.calls == ["verify"] * 3
    with pytest.raises(LockedOut) as locked:
        service.authenticate("DANA", PASSWORD, HOME)
    assert locked.value.minutes == 5
    assert hasher.calls == ["verify"] * 3
    assert audit_names().count("account.locked") == 1


def test_unknown_username_costs_a_dummy_verify_and_locks_alike(
    service: AccountService, hasher: CountingHasher
) -> None:
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            service.authenticate("nobody", "wrong", HOME)
    assert hasher.calls == ["verify_dummy"] * 3
    with pytest.raises(LockedOut):
        service.authenticate("nobody", "wrong", HOME)


def test_trusted_device_of_the_account_bypasses_the_username_lock(
    service: AccountService, make_account: Callable[..., Account]
) -> None:
    dana = make_account(username="dana")
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            service.authenticate("dana", "wrong", HOME)
    device = SignInContext(devices=(TrustedDevice(dana.id, "device-1", 0),))
    assert service.authenticate("dana", PASSWORD, device).id == dana.id
    stranger = SignInContext(devices=(TrustedDevice("another-account", "device-1", 0),))
    with pytest.raises(LockedOut):
        service.authenticate("dana", PASSWORD, stranger)


def test_unlock_lifts_the_lock_and_is_audited(
    service: AccountService, make_account: Callable[..., Account]
) -> None:
    make_account(username="dana")
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            service.authenticate("dana", "wrong", HOME)
    assert service.unlock(" Dana ") is True
    assert service.authenticate("dana", PASSWORD, HOME).username == "dana"
    assert "account.unlocked" in audit_names()


def test_the_lock_ends_after_its_duration(
    service: AccountService, hasher: CountingHasher, clock: FrozenClock, make_account: Callable[..., Account]
) -> None:
    make_account(username="dana")
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            service.authenticate("dana", "wrong", HOME)
    clock.advance(timedelta(minutes=4, seconds=59))
    with pytest.raises(LockedOut) as locked:
        service.authenticate("dana", PASSWORD, HOME)
    assert locked.value.minutes == 1
    clock.advance(timedelta(seconds=1))
    assert service.authenticate("dana", PASSWORD, HOME).username == "dana"
    assert hasher.calls == ["verify"] * 4
