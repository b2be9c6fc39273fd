"""Lockout rules on the in-process store, with a hand-moved clock: no app, no Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest

from idp.accounts.lockout import (
    LockedOut,
    Lockout,
    LockoutKeys,
    MemoryLockoutStore,
    device_key,
    lock_key,
    lockout_key,
)
from idp.policy import LockoutPolicy

POLICY = LockoutPolicy(threshold=3, duration=timedelta(minutes=5), window=timedelta(minutes=15))


class Ticker:
    """A monotonic clock that moves when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def ticker() -> Ticker:
    return Ticker()


@pytest.fixture
def lockout(ticker: Ticker) -> Lockout:
    return Lockout(MemoryLockoutStore(ticker), POLICY, LockoutKeys())


def fail(lockout: Lockout, username: str) -> bool:
    """One wrong password for ``username``; return whether it locked the username."""
    attempt = lockout.begin(lockout.keys.user(username))
    return lockout.failed(attempt)


def test_key_is_the_same_for_case_width_and_surrounding_spaces() -> None:
    assert lockout_key("  Dana.Rivera ") == lockout_key("dana.rivera") == lockout_key("ＤＡＮＡ.rivera")
    assert lockout_key("dana.rivera") != lockout_key("dana.riviera")
    assert lockout_key("dana").startswith("idp:lockout:user:")
    assert len(lockout_key("dana").rsplit(":", 1)[1]) == 64  # an HMAC-SHA-256, not the name


def test_keys_depend_on_prefix_and_secret_and_never_show_the_username() -> None:
    one = LockoutKeys.derive("idp:", "secret-one")
    two = LockoutKeys.derive("idp:", "secret-two")
    other_prefix = LockoutKeys.derive("test-7:", "secret-one")
    assert one.user("dana") != two.user("dana")
    assert other_prefix.user("dana").startswith("test-7:lockout:user:")
    assert "dana" not in one.user("dana")
    assert one.device("acc-1", "dev-1") != one.device("acc-1", "dev-2")
    assert device_key("acc-1", "dev-1").startswith("idp:lockout:device:")
    assert lock_key("k") == "k:locked"


def test_threshold_th_failure_locks_username_for_the_duration(lockout: Lockout, ticker: Ticker) -> None:
    assert [fail(lockout, "dana") for _ in range(3)] == [False, False, True]
    with pytest.raises(LockedOut) as locked:
        lockout.check(lockout.keys.user("DANA "))
    assert locked.value.resets_in == timedelta(minutes=5)
    assert locked.value.minutes == 5
    ticker.advance(4 * 60 + 1)
    with pytest.raises(LockedOut) as locked:
        lockout.begin(lockout.keys.user("dana"))
    assert locked.value.minutes == 1  # 59 s left, rounded up
    ticker.advance(60)
    lockout.check(lockout.keys.user("dana"))


def test_count_starts_again_after_the_lock(lockout: Lockout, ticker: Ticker) -> None:
    for _ in range(3):
        fail(lockout, "dana")
    ticker.advance(5 * 60)
    assert lockout.failures("dana") == 0
    assert [fail(lockout, "dana") for _ in range(3)] == [False, False, True]


def test_success_resets_the_count(lockout: Lockout) -> None:
    fail(lockout, "dana")
    fail(lockout, "dana")
    lockout.succeeded(lockout.begin(lockout.keys.user("dana")))
    assert lockout.failures("dana") == 0
    assert [fail(lockout, "dana") for _ in range(3)] == [False, False, True]


def test_right_password_at_the_threshold_clears_the_lock_it_set(lockout: Lockout) -> None:
    fail(lockout, "dana")
    fail(lockout, "dana")
    attempt = lockout.begin(lockout.keys.user("dana"))
    assert attempt.start.locks
    lockout.succeeded(attempt)
    lockout.check(lockout.keys.user("dana"))


def test_failures_outside_the_window_are_forgotten(lockout: Lockout, ticker: Ticker) -> None:
    fail(lockout, "dana")
    fail(lockout, "dana")
    ticker.advance(15 * 60)
    assert lockout.failures("dana") == 0
    assert fail(lockout, "dana") is False


def test_unknown_and_known_usernames_lock_alike(lockout: Lockout) -> None:
    # The store never knows whether an account exists: it counts names.
    assert [fail(lockout, "no-such-user") for _ in range(3)] == [False, False, True]
    with pytest.raises(LockedOut):
        lockout.check(lockout.keys.user("no-such-user"))


def test_unlock_lifts_the_lock_and_forgets_failures(lockout: Lockout) -> None:
    for _ in range(3):
        fail(lockout, "dana")
    assert lockout.unlock_username(" Dana") is True
    lockout.check(lockout.keys.user("dana"))
    assert lockout.failures("dana") == 0
    assert lockout.unlock_username("dana") is False


def test_one_username_locking_leaves_others_alone(lockout: Lockout) -> None:
    for _ in range(3):
        fail(lockout, "dana")
    lockout.check(lockout.keys.user("sam"))
    assert fail(lockout, "sam") is False


def test_memory_store_stays_bounded_under_a_spray_of_names(ticker: Ticker) -> None:
    store = MemoryLockoutStore(ticker, max_keys=100)
    lockout = Lockout(store, POLICY)
    for n in range(1000):
        fail(lockout, f"made-up-{n}")
    assert len(store._entries) <= 100
