"""Server-side sessions on the portal's database: hashed ids, idle timeout, rotation, logout by sid/sub.

Runs on SQLite and on the machine's PostgreSQL: the portal may use either (RP_DATABASE_URL).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from idp.clock import FrozenClock
from relying_party_demo.db import Base, create_schema, make_engine
from relying_party_demo.models import ReceivedLogoutToken, StoredSession
from relying_party_demo.sessions import PENDING_LIFE, Identity, SessionStore
from relying_party_demo.tokens import LogoutRequestClaims, LogoutTokenReplayed
from tests.conftest import drop_postgres_database, postgres_url, recreate_postgres_database

IDLE = timedelta(minutes=15)
RP_POSTGRES_DB = f"rp_test_{os.getpid()}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    folder = tmp_path_factory.mktemp("rp-sessions")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'portal.db'}"
    else:
        recreate_postgres_database(RP_POSTGRES_DB)
        url = postgres_url(RP_POSTGRES_DB)
    made = make_engine(url)
    create_schema(made, Path(folder) / "schema.lock")
    yield made
    made.dispose()
    if request.param == "postgresql":
        drop_postgres_database(RP_POSTGRES_DB)


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def store(db: Session, clock: FrozenClock) -> SessionStore:
    return SessionStore(db, clock=clock, idle=IDLE)


def dana(sid: str = "sid-1", sub: str = "account-1") -> Identity:
    return Identity(sub=sub, sid=sid, id_token="id.token.value", claims={"sub": sub, "given_name": "Dana"})


def logout(sid: str | None, sub: str | None, *, jti: str | None = None) -> LogoutRequestClaims:
    """What a verified logout token asks for; each call is a new token unless `jti` is given."""
    return LogoutRequestClaims(
        sid=sid,
        sub=sub,
        jti=jti or secrets.token_urlsafe(16),
        usable_until=datetime.now(UTC) + timedelta(minutes=10),
    )


def test_only_the_hash_of_the_session_id_is_stored(store: SessionStore, db: Session) -> None:
    session_id, _ = store.create({"k": "v"}, dana())
    (stored,) = db.execute(select(StoredSession)).scalars()
    assert session_id.startswith("rps_") and len(session_id) > 40
    assert stored.id_hash == hashlib.sha256(session_id.encode()).hexdigest()
    assert session_id not in {stored.id_hash, str(stored.data)}
    loaded = store.load(session_id)
    assert loaded.identity == dana() and loaded.row is not None and loaded.row.data == {"k": "v"}


def test_an_unknown_or_junk_id_finds_nothing(store: SessionStore) -> None:
    store.create({}, dana())
    for value in (None, "", "rps_unknown", "x" * 10_000):
        loaded = store.load(value)
        assert loaded.row is None and not loaded.timed_out


def test_a_signed_in_session_idle_for_the_idle_time_times_out(
    store: SessionStore, clock: FrozenClock, db: Session
) -> None:
    session_id, row = store.create({}, dana())
    clock.advance(IDLE - timedelta(seconds=1))
    store.touch(row)  # a request just before the limit starts the idle time again
    clock.advance(IDLE - timedelta(seconds=1))
    assert store.load(session_id).identity == dana()
    clock.advance(IDLE)
    loaded = store.load(session_id)
    assert loaded.row is None and loaded.timed_out
    assert db.execute(select(StoredSession)).first() is None  # and the row is gone


def test_a_pending_sign_in_may_take_longer_than_the_idle_time(
    store: SessionStore, clock: FrozenClock
) -> None:
    session_id, _ = store.create({"_state_district_x": {"data": {}}}, None)
    clock.advance(IDLE + timedelta(minutes=1))
    assert store.load(session_id).row is not None
    clock.advance(PENDING_LIFE)
    loaded = store.load(session_id)
    # Nobody was signed in: no "You have been signed out", the sign-in just starts over.
    assert loaded.row is None and not loaded.timed_out


def test_back_channel_logout_by_sid_ends_only_that_session(store: SessionStore) -> None:
    first, _ = store.create({}, dana(sid="sid-1"))
    second, _ = store.create({}, dana(sid="sid-2"))
    other, _ = store.create({}, dana(sid="sid-3", sub="account-2"))
    assert store.end_for_logout(logout("sid-1", "account-1")) == 1
    assert store.load(first).row is None
    assert store.load(second).row is not None and store.load(other).row is not None


def test_a_sid_of_another_user_ends_nothing(store: SessionStore) -> None:
    session_id, _ = store.create({}, dana(sid="sid-1", sub="account-1"))
    assert store.end_for_logout(logout("sid-1", "account-2")) == 0
    assert store.load(session_id).row is not None


def test_back_channel_logout_by_sub_alone_ends_every_session_of_the_user(store: SessionStore) -> None:
    ids = [store.create({}, dana(sid=f"sid-{n}"))[0] for n in range(3)]
    other, _ = store.create({}, dana(sub="account-2"))
    assert store.end_for_logout(logout(None, "account-1")) == 3
    assert all(store.load(session_id).row is None for session_id in ids)
    assert store.load(other).row is not None
    assert store.end_for_logout(logout(None, None)) == 0


def test_a_logout_token_received_again_ends_nothing(store: SessionStore, db: Session) -> None:
    first, _ = store.create({}, dana(sid="sid-1"))
    captured = logout(None, "account-1", jti="jti-1")
    assert store.end_for_logout(captured) == 1
    again, _ = store.create({}, dana(sid="sid-2"))  # Dana signs in once more
    with pytest.raises(LogoutTokenReplayed):
        store.end_for_logout(captured)
    assert store.load(first).row is None and store.load(again).row is not None
    (kept,) = db.execute(select(ReceivedLogoutToken)).scalars()
    assert kept.jti_hash == hashlib.sha256(b"jti-1").hexdigest()
    # The refusal rolled back cleanly: the next token is taken.
    assert store.end_for_logout(logout(None, "account-1")) == 1


def test_of_two_deliveries_at_once_exactly_one_ends_the_sessions(
    engine: Engine, store: SessionStore, clock: FrozenClock
) -> None:
    for n in range(3):
        store.create({}, dana(sid=f"sid-{n}"))
    token = logout(None, "account-1")
    both_ready = threading.Barrier(2)
    outcomes: list[int | str] = []

    def deliver() -> None:
        with Session(engine, expire_on_commit=False) as own:
            worker = SessionStore(own, clock=clock, idle=IDLE)
            both_ready.wait()
            try:
                outcomes.append(worker.end_for_logout(token))
            except LogoutTokenReplayed:
                outcomes.append("replayed")

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(outcomes, key=str) == [3, "replayed"]


def test_saving_keeps_the_identity_and_data(store: SessionStore, clock: FrozenClock) -> None:
    session_id, row = store.create({}, None)
    clock.advance(timedelta(minutes=1))
    store.save(row, {"csrf_token": "t"}, dana())
    loaded = store.load(session_id)
    assert loaded.identity == dana() and loaded.row is not None
    assert loaded.row.data == {"csrf_token": "t"} and loaded.row.signed_in_at == clock.now()


def test_prune_removes_what_has_timed_out(store: SessionStore, clock: FrozenClock) -> None:
    signed_in, _ = store.create({}, dana())
    pending, _ = store.create({"k": "v"}, None)
    clock.advance(IDLE)
    assert store.prune() == 1
    assert store.load(pending).row is not None
    clock.advance(PENDING_LIFE)
    assert store.prune() == 1
    assert store.load(signed_in).row is None


def test_prune_forgets_logout_tokens_once_they_would_be_refused(
    store: SessionStore, clock: FrozenClock, db: Session
) -> None:
    def kept() -> int:
        return len(db.execute(select(ReceivedLogoutToken)).all())

    for minutes in (1, 10):
        token = replace(logout("sid-1", None), usable_until=clock.now() + timedelta(minutes=minutes))
        store.end_for_logout(token)
    clock.advance(timedelta(minutes=1))
    store.prune()
    assert kept() == 2  # usable to the second: a replay now would still be refused
    clock.advance(timedelta(seconds=1))
    store.prune()
    assert kept() == 1
