"""The counters through ``IDP_REDIS_URL=redis+sentinel://…``: a master, its replica and a Sentinel of
the test's own (tests/infra.py), a planned failover that loses no count, and a crashed master whose
gap the database's counters cover until the Sentinel names the new master.

The counters are the ones ``open_counters`` builds, over the app's database; they commit on
connections of their own, so the tests run without the per-test transaction (``commits``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client import REGISTRY
from sqlalchemy import select

from idp import create_app
from idp.accounts.lockout import LockedOut, Lockout
from idp.clock import FrozenClock
from idp.counters.connect import Counters, open_counters
from idp.counters.fallback import RedisHealth
from idp.counters.models import CounterEntry
from idp.counters.store import lock_key
from idp.extensions import db
from idp.policy import LockoutPolicy
from tests.conftest import settings_for_tests
from tests.infra import SentinelRedis, redis_with_sentinel

pytestmark = pytest.mark.commits

POLICY = LockoutPolicy(threshold=5, duration=timedelta(minutes=5), window=timedelta(minutes=15))
MINUTE = timedelta(minutes=1)


@dataclass
class Deployment:
    """One process's counters over the app's database and a Redis behind a Sentinel."""

    redis: SentinelRedis
    counters: Counters
    lockout: Lockout

    @property
    def health(self) -> RedisHealth:
        assert self.counters.health is not None
        return self.counters.health

    def key(self, username: str) -> str:
        return self.lockout.user_key(username)

    def fail(self, username: str, times: int) -> list[int]:
        """Count ``times`` failed sign-ins of ``username``; return the counts the attempts saw."""
        return [self.lockout.begin(self.key(username)).attempt.count for _ in range(times)]

    def in_master(self, key: str) -> bool:
        return bool(self.redis.command(self.redis.master_port(), "EXISTS", key))

    def database_keys(self) -> set[str]:
        with db.engine.connect() as conn:
            return set(conn.execute(select(CounterEntry.key)).scalars())


def redis_errors() -> float:
    return REGISTRY.get_sample_value("idp_redis_errors_total") or 0.0


@pytest.fixture
def deployment(app: Flask, tmp_path: Path) -> Iterator[Deployment]:
    with redis_with_sentinel(tmp_path) as redis:
        counters = open_counters(
            redis.url,
            prefix="idp:",
            secret_key="sentinel-secret",
            clock=FrozenClock(),
            engine=db.engine,
            session=db.session,
        )
        assert counters.client is not None and counters.health is not None
        counters.health.retry_seconds = 0.0  # a command tries Redis again at once
        try:
            yield Deployment(redis, counters, Lockout(counters.store, counters.keys, POLICY))
        finally:
            counters.client.close()


def test_counters_count_in_the_master_the_sentinel_names(deployment: Deployment) -> None:
    assert deployment.fail("dana", 2) == [1, 2]
    assert deployment.in_master(deployment.key("dana"))
    assert deployment.counters.store.increment("idp:{limit:signin}", MINUTE).count == 1
    assert deployment.database_keys() == set()  # the fallback never counted


def test_a_planned_failover_loses_no_count(deployment: Deployment) -> None:
    errors = redis_errors()
    assert deployment.fail("dana", 3) == [1, 2, 3]
    assert deployment.counters.store.increment("idp:{limit:signin}", MINUTE).count == 1
    old = deployment.redis.master_port()

    deployment.redis.fail_over()
    assert deployment.redis.master_port() != old

    # The pooled connection still reaches the old master, now a replica: its refusal sends the
    # command once more, to the new master, which goes on from the same counts.
    assert deployment.fail("dana", 1) == [4]
    assert deployment.lockout.begin(deployment.key("dana")).attempt.locks  # the fifth, exactly
    with pytest.raises(LockedOut):
        deployment.lockout.check(deployment.key("dana"))
    assert deployment.counters.store.increment("idp:{limit:signin}", MINUTE).count == 2
    assert deployment.in_master(lock_key(deployment.key("dana")))
    assert redis_errors() == errors and not deployment.health.fallback_active
    # Only the lock is copied to the database (DurableLocks); nothing was counted there.
    assert deployment.database_keys() == {deployment.key("dana")}


def test_a_crashed_master_is_covered_by_the_database_until_the_new_master_counts(
    deployment: Deployment,
) -> None:
    deployment.fail("dana", POLICY.threshold)  # locked: in Redis, and in the database too
    assert deployment.fail("erin", 2) == [1, 2]
    old = deployment.redis.master_port()
    deployment.redis.command(old, "WAIT", 1, 10_000)  # the replica has every count so far

    assert deployment.redis.kill_master() == old
    # Until the Sentinel names a new master, the database counts and its lock holds.
    with pytest.raises(LockedOut):
        deployment.lockout.check(deployment.key("dana"))
    assert deployment.health.fallback_active
    assert deployment.fail("fay", POLICY.threshold - 1) == [1, 2, 3, 4]
    assert deployment.lockout.begin(deployment.key("fay")).attempt.locks  # the fifth, exactly
    with pytest.raises(LockedOut):
        deployment.lockout.check(deployment.key("fay"))
    assert deployment.key("fay") in deployment.database_keys()

    new = deployment.redis.wait_for_new_master(old)
    # The next command reaches the new master: the replica's counts go on, the gap's lock holds.
    assert deployment.fail("erin", 1) == [3]
    assert not deployment.health.fallback_active
    with pytest.raises(LockedOut):
        deployment.lockout.check(deployment.key("fay"))
    with pytest.raises(LockedOut):
        deployment.lockout.check(deployment.key("dana"))
    assert deployment.redis.master_port() == new
    assert deployment.in_master(lock_key(deployment.key("fay")))  # read back from the database


def test_readiness_says_degraded_while_no_master_answers_and_ok_after_the_failover(
    database_url: str, keys_dir: Path, tmp_path: Path
) -> None:
    with redis_with_sentinel(tmp_path) as redis:
        settings = settings_for_tests(database_url, keys_dir, redis_url=redis.url)
        app = create_app(settings, clock=FrozenClock())
        try:
            client = app.test_client()
            assert client.get("/readyz").get_json()["redis"] == "ok"
            old = redis.kill_master()
            degraded = client.get("/readyz")
            assert (degraded.status_code, degraded.get_json()["redis"]) == (200, "degraded")
            redis.wait_for_new_master(old)
            ready = client.get("/readyz")
            assert (ready.status_code, ready.get_json()["redis"]) == (200, "ok")
        finally:
            with app.app_context():
                db.engine.dispose()
