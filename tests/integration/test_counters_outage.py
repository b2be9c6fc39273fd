"""Locks that outlive Redis, on a redis-server of the test's own that it stops and starts again empty,
and the database the app uses; plus what a sign-in costs the counter table while Redis answers.

The counters are the ones ``open_counters`` builds for a redis:// URL: Redis, its locks copied to
the database, and the database counting while Redis does not answer. They commit on connections
of their own, so the tests that lock run without the per-test transaction (``commits``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from idp.accounts.lockout import LockedOut, Lockout
from idp.accounts.models import Account
from idp.clock import FrozenClock
from idp.counters.connect import Counters, open_counters
from idp.counters.database import DatabaseCounters
from idp.counters.fallback import FallbackCounters
from idp.counters.models import CounterEntry
from idp.counters.store import lock_key
from idp.extensions import db
from idp.policy import LockoutPolicy
from idp.web.context import services
from tests.conftest import PASSWORD
from tests.functional import oidc
from tests.redis_server import RedisServer

LOCK = timedelta(minutes=5)
POLICY = LockoutPolicy(threshold=3, duration=LOCK, window=timedelta(minutes=15))


@dataclass
class Deployment:
    """One process's counters over the app's database and a Redis the test stops and starts."""

    redis: RedisServer
    counters: Counters
    lockout: Lockout

    @property
    def key(self) -> str:
        return self.lockout.user_key("dana")

    def restart_redis_empty(self) -> None:
        self.redis.stop()
        self.redis.start()  # the same port, no persistence: every key and lock is gone

    def lock_in_redis(self) -> bool:
        return bool(self.redis.command("EXISTS", lock_key(self.key)))

    def locked_until_in_database(self) -> object:
        with db.engine.connect() as conn:
            query = select(CounterEntry.locked_until).where(CounterEntry.key == self.key)
            return conn.execute(query).scalar_one_or_none()

    def lock_dana(self) -> None:
        for _ in range(POLICY.threshold):
            self.lockout.begin(self.key)


@pytest.fixture
def deployment(app: Flask, tmp_path: Path) -> Iterator[Deployment]:
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        counters = open_counters(
            redis.url,
            prefix="idp:",
            secret_key="outage-secret",
            clock=FrozenClock(),
            engine=db.engine,
            session=db.session,
        )
        assert counters.client is not None and counters.health is not None
        counters.health.retry_seconds = 0.0  # a command tries Redis again at once
        yield Deployment(redis, counters, Lockout(counters.store, counters.keys, POLICY))
        counters.client.close()
    finally:
        redis.stop()


@pytest.mark.commits
def test_a_lock_outlives_a_redis_restart_until_unlocked(deployment: Deployment) -> None:
    deployment.lock_dana()
    assert deployment.lock_in_redis() and deployment.locked_until_in_database() is not None

    deployment.restart_redis_empty()
    assert not deployment.lock_in_redis()
    with pytest.raises(LockedOut) as locked:
        deployment.lockout.check(deployment.key)
    assert locked.value.resets_in == LOCK  # the database's end, on the app's (frozen) clock
    # Read back into Redis: its own script refuses the next attempt, with no database read.
    assert deployment.lock_in_redis()
    with pytest.raises(LockedOut):
        deployment.lockout.begin(deployment.key)

    assert deployment.lockout.unlock_username("Dana") is True
    assert not deployment.lock_in_redis() and deployment.locked_until_in_database() is None
    deployment.lockout.check(deployment.key)
    assert deployment.lockout.begin(deployment.key).attempt.count == 1


@pytest.mark.commits
def test_unlocking_before_anyone_signs_in_again_clears_the_lock_redis_lost(deployment: Deployment) -> None:
    deployment.lock_dana()
    deployment.restart_redis_empty()
    assert deployment.lockout.unlock_username("dana") is True
    assert deployment.locked_until_in_database() is None
    deployment.lockout.check(deployment.key)
    assert deployment.lockout.unlock_username("dana") is False


@pytest.mark.commits
def test_a_lock_set_while_redis_was_down_holds_once_it_answers_again(deployment: Deployment) -> None:
    health = deployment.counters.health
    assert health is not None
    deployment.redis.stop()
    deployment.lock_dana()  # counted and locked in the database
    assert health.fallback_active and deployment.locked_until_in_database() is not None

    deployment.redis.start()
    with pytest.raises(LockedOut):
        deployment.lockout.check(deployment.key)
    assert not health.fallback_active and deployment.lock_in_redis()


@pytest.mark.commits
def test_the_right_password_on_the_locking_attempt_lifts_both_copies(deployment: Deployment) -> None:
    lockout = deployment.lockout
    for _ in range(POLICY.threshold - 1):
        lockout.begin(deployment.key)
    started = lockout.begin(deployment.key)
    assert started.attempt.locks and deployment.locked_until_in_database() is not None
    lockout.succeeded(started)
    assert not deployment.lock_in_redis() and deployment.locked_until_in_database() is None
    lockout.check(deployment.key)


@pytest.mark.commits
@pytest.mark.parametrize("redis_up", [True, False], ids=["redis", "outage"])
def test_counting_inside_an_open_request_transaction_waits_for_nothing(
    deployment: Deployment, redis_up: bool
) -> None:
    # Pages that count while their transaction is open: a reset's unlock, the password change,
    # the Access-ID checks. On SQLite that transaction holds the one writer (idp.db).
    if not redis_up:
        deployment.redis.stop()
    db.session.execute(select(CounterEntry.key).limit(1))
    started = time.monotonic()
    deployment.lock_dana()
    with pytest.raises(LockedOut):
        deployment.lockout.check(deployment.key)
    assert deployment.lockout.unlock_username("dana") is True
    deployment.lock_dana()
    assert time.monotonic() - started < 2  # no busy timeout (10 s) waiting for this very thread
    db.session.commit()
    assert deployment.locked_until_in_database() is not None


# --- what a sign-in costs the counter table while Redis answers ---------------------------
@pytest.fixture
def database_calls(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The operations the app's database counters run (each is one statement), by name."""
    store = services().counters.store
    assert isinstance(store, FallbackCounters) and isinstance(store.fallback, DatabaseCounters)
    database = store.fallback
    calls: list[str] = []

    def spy(name: str) -> Callable[..., object]:
        operation = getattr(database, name)

        def run(*args: object, **kwargs: object) -> object:
            calls.append(name)
            return operation(*args, **kwargs)

        return run

    for name in ("attempt", "lock", "locked_for", "window", "reset", "increment"):
        monkeypatch.setattr(database, name, spy(name))
    return calls


def sign_in(app: Flask, password: str) -> int:
    """Sign in from a new browser (no device cookie: the attempt counts against the username)."""
    with app.app_context():
        return oidc.sign_in(app.test_client(), "dana.rivera", password).status_code


def test_a_sign_in_reads_the_counter_table_once_and_writes_nothing(
    app: Flask, make_account: Callable[..., Account], database_calls: list[str]
) -> None:
    make_account(username="dana.rivera")
    for password, status in (("wrong", 200), (PASSWORD, 303), ("wrong", 200), (PASSWORD, 303)):
        database_calls.clear()
        assert sign_in(app, password) == status
        assert database_calls == ["locked_for"], (password, database_calls)  # the lock Redis may have lost
