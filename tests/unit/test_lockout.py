"""Lockout rules on the in-process counters, with a frozen clock: no app, no Redis."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from redis.crc import key_slot

from idp.accounts.lockout import LockedOut, Lockout
from idp.clock import FrozenClock
from idp.counters.memory import MemoryCounters
from idp.counters.store import Keys, Threshold, lock_key, whole_minutes
from idp.policy import LockoutPolicy

POLICY = LockoutPolicy(threshold=3, duration=timedelta(minutes=5), window=timedelta(minutes=15))
KEYS = Keys.derive("idp:", "unit-test-secret")
HASHED = "[0-9a-f]{64}"  # an HMAC-SHA-256, never the value itself


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def lockout(clock: FrozenClock) -> Lockout:
    return Lockout(MemoryCounters(clock), KEYS, POLICY)


def fail(lockout: Lockout, username: str) -> bool:
    """One wrong password for ``username``; return whether it locked the username."""
    started = lockout.begin(lockout.user_key(username))
    return lockout.failed(started)


# --- keys ---------------------------------------------------------------------------------
def test_key_is_the_same_for_case_width_and_surrounding_spaces(lockout: Lockout) -> None:
    key = lockout.user_key
    assert key("  Dana.Rivera ") == key("dana.rivera") == key("ＤＡＮＡ.rivera")
    assert key("dana.rivera") != key("dana.riviera")
    assert re.fullmatch(rf"idp:lockout:user:\{{{HASHED}\}}", key("dana"))


def test_keys_depend_on_prefix_and_secret_and_never_show_the_username() -> None:
    counters = MemoryCounters(FrozenClock())
    one = Lockout(counters, Keys.derive("idp:", "secret-one"), POLICY)
    two = Lockout(counters, Keys.derive("idp:", "secret-two"), POLICY)
    other_prefix = Lockout(counters, Keys.derive("test-7:", "secret-one"), POLICY)
    assert one.user_key("dana") != two.user_key("dana")
    assert other_prefix.user_key("dana").startswith("test-7:lockout:user:")
    assert "dana" not in one.user_key("dana")
    assert one.device_key("acc-1", "dev-1") != one.device_key("acc-1", "dev-2")
    assert one.device_key("acc-1", "dev-1") != two.device_key("acc-1", "dev-1")
    # The account and the device are kept apart: ("acc-1", "dev") is not ("acc-1d", "ev").
    assert one.device_key("acc-1", "dev") != one.device_key("acc-1d", "ev")
    assert re.fullmatch(rf"idp:lockout:device:\{{{HASHED}\}}", one.device_key("acc-1", "dev-1"))
    assert "acc-1" not in one.device_key("acc-1", "dev-1")
    assert lock_key("k") == "k:locked"


def test_purposes_count_apart_and_a_key_shares_its_locks_cluster_slot() -> None:
    assert KEYS.name("lockout:user", "x") != KEYS.name("access:id", "x")
    assert KEYS.name("access:id", "x").startswith("idp:access:id:{")
    # The hash is a hash tag: a key and its lock land in one slot of a Redis Cluster.
    key = KEYS.name("lockout:user", "dana")
    assert key_slot(key.encode()) == key_slot(lock_key(key).encode())


def test_policy_gives_its_threshold() -> None:
    assert POLICY.attempts == Threshold(limit=3, window=timedelta(minutes=15), lock=timedelta(minutes=5))


@pytest.mark.parametrize(
    ("left", "minutes"),
    [(timedelta(0), 1), (timedelta(seconds=1), 1), (timedelta(seconds=60), 1), (timedelta(seconds=61), 2)],
)
def test_waits_are_told_in_whole_minutes_rounded_up(left: timedelta, minutes: int) -> None:
    assert whole_minutes(left) == minutes
    assert LockedOut(left).minutes == minutes


# --- the rules ----------------------------------------------------------------------------
def test_threshold_th_failure_locks_username_for_the_duration(lockout: Lockout, clock: FrozenClock) -> None:
    assert [fail(lockout, "dana") for _ in range(3)] == [False, False, True]
    assert lockout.is_locked(lockout.user_key("dana"))
    with pytest.raises(LockedOut) as locked:
        lockout.check(lockout.user_key("DANA "))
    assert locked.value.resets_in == timedelta(minutes=5)
    assert locked.value.minutes == 5
    clock.advance(timedelta(minutes=4, seconds=1))
    with pytest.raises(LockedOut) as locked:
        lockout.begin(lockout.user_key("dana"))
    assert locked.value.resets_in == timedelta(seconds=59)
    assert locked.value.minutes == 1  # 59 s left, rounded up
    clock.advance(timedelta(seconds=60))
    lockout.check(lockout.user_key("dana"))
    assert not lockout.is_locked(lockout.user_key("dana"))


def test_check_counts_nothing(lockout: Lockout) -> None:
    for _ in range(10):
        lockout.check(lockout.user_key("dana"))
    assert lockout.failures("dana") == 0


def test_count_starts_again_after_the_lock(lockout: Lockout, clock: FrozenClock) -> None:
    for _ in range(3):
        fail(lockout, "dana")
    clock.advance(timedelta(minutes=5))
    assert lockout.failures("dana") == 0
    assert [fail(lockout, "dana") for _ in range(3)] == [False, False, True]


def test_success_resets_the_count(lockout: Lockout) -> None:
    fail(lockout, "dana")
    fail(lockout, "dana")
    assert lockout.failures("dana") == 2
    lockout.succeeded(lockout.begin(lockout.user_key("dana")))
    assert lockout.failures("dana") == 0
    assert [fail(lockout, "dana") for _ in range(3)] == [False, False, True]


def test_right_password_at_the_threshold_clears_the_lock_it_set(lockout: Lockout) -> None:
    fail(lockout, "dana")
    fail(lockout, "dana")
    started = lockout.begin(lockout.user_key("dana"))
    assert started.attempt.locks
    assert started.attempt.count == 3
    lockout.succeeded(started)
    lockout.check(lockout.user_key("dana"))


def test_failures_outside_the_window_are_forgotten(lockout: Lockout, clock: FrozenClock) -> None:
    fail(lockout, "dana")
    fail(lockout, "dana")
    clock.advance(timedelta(minutes=15))
    assert lockout.failures("dana") == 0
    assert fail(lockout, "dana") is False


def test_the_window_runs_from_the_first_failure(lockout: Lockout, clock: FrozenClock) -> None:
    fail(lockout, "dana")
    clock.advance(timedelta(minutes=14))
    fail(lockout, "dana")  # later failures do not move the window's end
    clock.advance(timedelta(minutes=1))
    assert lockout.failures("dana") == 0


def test_unknown_and_known_usernames_lock_alike(lockout: Lockout) -> None:
    # The counters never know whether an account exists: they count names.
    assert [fail(lockout, "no-such-user") for _ in range(3)] == [False, False, True]
    with pytest.raises(LockedOut):
        lockout.check(lockout.user_key("no-such-user"))


def test_unlock_lifts_the_lock_and_forgets_failures(lockout: Lockout) -> None:
    for _ in range(3):
        fail(lockout, "dana")
    assert lockout.unlock_username(" Dana") is True
    lockout.check(lockout.user_key("dana"))
    assert lockout.failures("dana") == 0
    assert lockout.unlock_username("dana") is False


def test_unlock_of_a_username_with_failures_but_no_lock_forgets_them(lockout: Lockout) -> None:
    fail(lockout, "dana")
    assert lockout.unlock_username("dana") is False
    assert lockout.failures("dana") == 0


def test_one_username_locking_leaves_others_alone(lockout: Lockout) -> None:
    for _ in range(3):
        fail(lockout, "dana")
    lockout.check(lockout.user_key("sam"))
    assert fail(lockout, "sam") is False


def test_a_device_counts_apart_from_its_username(lockout: Lockout) -> None:
    device = lockout.device_key("acc-1", "dev-1")
    for _ in range(3):
        fail(lockout, "dana")
    lockout.check(device)
    assert [lockout.failed(lockout.begin(device)) for _ in range(3)] == [False, False, True]
    with pytest.raises(LockedOut):
        lockout.check(device)
    lockout.check(lockout.device_key("acc-1", "dev-2"))


def test_memory_counters_stay_bounded_under_a_spray_of_names(clock: FrozenClock) -> None:
    counters = MemoryCounters(clock, max_keys=100)
    lockout = Lockout(counters, KEYS, POLICY)
    for n in range(1000):
        fail(lockout, f"made-up-{n}")
    assert len(counters._entries) <= 100
