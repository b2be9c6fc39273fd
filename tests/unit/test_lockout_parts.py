"""Device cookies, bounded hashing, Redis health and settings: no app, no Redis."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from itsdangerous import URLSafeSerializer
from prometheus_client import REGISTRY

from idp.accounts.devices import DEVICE_COOKIE_SALT, DeviceCookies
from idp.accounts.hashing import BoundedPasswordHasher, HashingBusy, HashingSlots
from idp.clock import FrozenClock
from idp.config import ConfigError, Settings
from idp.counters.fallback import RedisHealth
from idp.policy import HashingPolicy, LockoutPolicy

CHEAP = HashingPolicy(time_cost=1, memory_kib=256, parallelism=1, max_concurrent=1)
SECRET = "unit-test-secret-key-0123456789abcdef"


def cookies(clock: FrozenClock, secret: str = SECRET, **policy: object) -> DeviceCookies:
    return DeviceCookies(secret, clock=clock, policy=LockoutPolicy(**policy))  # type: ignore[arg-type]


# --- device cookies -----------------------------------------------------------------------
def test_issued_device_cookie_names_the_account_with_a_random_device() -> None:
    clock = FrozenClock()
    devices = cookies(clock)
    first = devices.read(devices.issue(None, "acc-1"))
    second = devices.read(devices.issue(None, "acc-1"))
    assert [d.account_id for d in first] == ["acc-1"]
    assert first[0].device_id != second[0].device_id
    assert len(first[0].device_id) >= 22  # 128 bits


def test_forged_or_foreign_device_cookie_counts_for_nothing() -> None:
    clock = FrozenClock()
    value = cookies(clock).issue(None, "acc-1")
    assert cookies(clock, secret="another-secret-key-0123456789abcdef").read(value) == ()
    assert cookies(clock).read(value[:-2] + "xx") == ()
    assert cookies(clock).read("not a cookie") == ()
    assert cookies(clock).read("x" * 5000) == ()
    assert cookies(clock).read(None) == ()


def test_device_cookie_expires_after_its_life() -> None:
    clock = FrozenClock()
    devices = cookies(clock, device_cookie_life=timedelta(days=30))
    value = devices.issue(None, "acc-1")
    clock.advance(timedelta(days=29))
    assert len(devices.read(value)) == 1
    clock.advance(timedelta(days=2))
    assert devices.read(value) == ()


def test_one_browser_remembers_a_few_accounts_newest_first() -> None:
    clock = FrozenClock()
    devices = cookies(clock, devices_per_browser=2)
    value = devices.issue(None, "parent")
    value = devices.issue(value, "student")
    assert [d.account_id for d in devices.read(value)] == ["student", "parent"]
    value = devices.issue(value, "parent")  # signing in again refreshes, does not duplicate
    assert [d.account_id for d in devices.read(value)] == ["parent", "student"]
    value = devices.issue(value, "sibling")
    assert [d.account_id for d in devices.read(value)] == ["sibling", "parent"]


def test_a_cookie_of_many_accounts_reads_back_compressed_or_not() -> None:
    clock = FrozenClock()
    devices = cookies(clock, devices_per_browser=8)
    value = None
    for n in range(8):
        value = devices.issue(value, f"account-{n}")
    assert value is not None and len(devices.read(value)) == 8
    # itsdangerous compresses a payload when that is shorter (and marks it with ".").
    entries = [[f"account-{n}", "same-device-id-" * 3, int(clock.now().timestamp())] for n in range(3)]
    compressed = URLSafeSerializer(SECRET, salt=DEVICE_COOKIE_SALT).dumps(entries)
    assert compressed.startswith(".")
    assert [d.account_id for d in devices.read(compressed)] == ["account-0", "account-1", "account-2"]


# --- bounded hashing ----------------------------------------------------------------------
def test_hasher_refuses_quickly_when_every_slot_is_taken() -> None:
    hasher = BoundedPasswordHasher(CHEAP)
    stored = hasher.hash("a password")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with hasher.slots.hold():
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        busy_before = REGISTRY.get_sample_value("idp_argon2_busy_total")
        with pytest.raises(HashingBusy) as busy:
            hasher.verify(stored, "a password")
        assert busy.value.retry_after >= 1
        assert REGISTRY.get_sample_value("idp_argon2_busy_total") == busy_before + 1
    finally:
        release.set()
        holder.join()
    assert hasher.verify(stored, "a password") is True


def test_a_thread_holding_a_slot_may_hash_again_inside_it() -> None:
    hasher = BoundedPasswordHasher(CHEAP)
    stored = hasher.hash("pw")
    with hasher.slots.hold():
        assert hasher.verify(stored, "pw")
        hasher.verify_dummy("pw")  # nested: no deadlock with one slot
    assert hasher.verify(stored, "pw")


def test_verifications_are_counted() -> None:
    hasher = BoundedPasswordHasher(CHEAP)
    stored = hasher.hash("pw")
    before = REGISTRY.get_sample_value("idp_argon2_verifications_total")
    hasher.verify(stored, "pw")
    hasher.verify(stored, "wrong")
    hasher.verify_dummy("pw")
    assert REGISTRY.get_sample_value("idp_argon2_verifications_total") == before + 3


def test_slots_never_exceed_the_limit_under_contention() -> None:
    slots = HashingSlots(HashingPolicy(max_concurrent=2, slot_wait=timedelta(seconds=5)))
    inside, peak, lock = 0, 0, threading.Lock()

    def work() -> None:
        nonlocal inside, peak
        with slots.hold():
            with lock:
                inside += 1
                peak = max(peak, inside)
            threading.Event().wait(0.01)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 2


# --- Redis health -------------------------------------------------------------------------
class Ticker:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_outage_is_logged_once_per_interval_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    ticker = Ticker()
    health = RedisHealth(retry_seconds=1.0, log_every_seconds=60.0, monotonic=ticker)
    caplog.set_level(logging.WARNING, logger="idp.redis")
    assert health.should_try() and not health.fallback_active
    for _ in range(50):
        health.failed(ConnectionError("refused"))
    assert health.fallback_active
    assert not health.should_try()
    ticker.now = 1.0
    assert health.should_try()
    assert len(caplog.records) == 1
    ticker.now = 61.0
    health.failed(ConnectionError("refused"))
    assert len(caplog.records) == 2
    assert "still unavailable" in caplog.records[-1].getMessage()
    health.succeeded()
    assert not health.fallback_active and health.should_try()
    assert "answers again" in caplog.records[-1].getMessage()


# --- settings -----------------------------------------------------------------------------
def test_settings_read_the_lockout_hashing_and_prefix_variables() -> None:
    settings = Settings.from_env(
        {
            "IDP_ARGON2_MAX_CONCURRENT": "2",
            "IDP_REDIS_KEY_PREFIX": "district-7:",
            "IDP_LOCKOUT_THRESHOLD": "5",
            "IDP_LOCKOUT_SECONDS": "60",
            "IDP_LOCKOUT_WINDOW_SECONDS": "600",
        }
    )
    assert HashingPolicy.from_settings(settings).max_concurrent == 2
    assert settings.redis_key_prefix == "district-7:"
    assert LockoutPolicy.from_settings(settings) == LockoutPolicy(
        threshold=5, duration=timedelta(minutes=1), window=timedelta(minutes=10)
    )
    assert Settings.from_env({}).argon2_max_concurrent == 4


@pytest.mark.parametrize("variable", ["IDP_RATE_LIMIT_SIGNIN", "IDP_RATE_LIMIT_TOKEN"])
def test_malformed_rate_limit_is_refused_at_start(variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: "lots"})


def test_zero_argon2_slots_is_refused() -> None:
    with pytest.raises(ConfigError, match="IDP_ARGON2_MAX_CONCURRENT"):
        Settings.from_env({"IDP_ARGON2_MAX_CONCURRENT": "0"})
