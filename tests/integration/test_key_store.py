"""The key stores: the rotation rules on the folder and on the database alike, then what only the
database store shows (sealed keys, a wrong passphrase, altered rows, creation by many at once).

The database store runs on the session's migrated SQLite and PostgreSQL databases, on an engine
of the test's own: it commits on connections of its own, as it does in the provider. Keys are
made once per module and copied into each test's store, stamped with the test's time; only the
changes under test generate keys. Scrypt runs at a low cost here, except in the one test that
seals with the default.
"""

from __future__ import annotations

import os
import threading
import types
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from joserfc import jws
from sqlalchemy import Engine, create_engine, delete, select, update

from idp.clock import FrozenClock, SystemClock
from idp.config import ConfigError, Settings
from idp.db import Base
from idp.keys import ring as ring_module
from idp.keys.cipher import AlteredKey, ScryptCost, WrongPassphrase
from idp.keys.database import DatabaseKeyStore
from idp.keys.files import FileKeyStore
from idp.keys.keystore import KeyStore, KeyStoreUnavailable, StoredKeys
from idp.keys.models import KeySetRow, SigningKeyRow
from idp.keys.ring import KeyRing
from idp.keys.rotation import KeyRotation, KeyTimings, NextKeyTooYoung
from idp.keys.store import KeyRecord, KeySetError, ensure_key_set
from idp.keys.stores import open_key_store
from tests.conftest import drop_postgres_database, postgres_url, recreate_postgres_database

PASSPHRASE = "a long passphrase for the key set, kept apart from backups"
CHEAP = ScryptCost(n=2**10, r=8, p=1)
TIMINGS = KeyTimings(
    jwks_max_age=timedelta(minutes=5),
    check_interval=timedelta(seconds=2),
    longest_token_life=timedelta(minutes=10),
)
POSTGRES_DB = f"idp_test_key_store_{os.getpid()}"
LEAD = TIMINGS.lead
GRACE = TIMINGS.grace


# --- the stores ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def made_once(tmp_path_factory: pytest.TempPathFactory) -> StoredKeys:
    """A first key set (an active and a next key per algorithm), generated once for the module."""
    folder = tmp_path_factory.mktemp("keys-made-once")
    ensure_key_set(folder, clock=SystemClock(), passphrase=None)
    return FileKeyStore(folder).load()


def fresh(made: StoredKeys, clock: FrozenClock) -> StoredKeys:
    """The module's keys as a set made at the test's present."""
    now = clock.now()
    records = tuple(
        replace(r, created_at=now, activated_at=now if r.state == "active" else None) for r in made.records
    )
    return StoredKeys(records, made.private, None)


class KeyDatabases:
    """One database per backend for the module, holding the key store's two tables, made on demand."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.engines: dict[str, Engine] = {}

    def engine(self, backend: str) -> Engine:
        if backend not in self.engines:
            if backend == "sqlite":
                url = f"sqlite:///{self.folder / 'keys.db'}"
            else:
                recreate_postgres_database(POSTGRES_DB)
                url = postgres_url(POSTGRES_DB)
            made = self.engines[backend] = create_engine(url)
            Base.metadata.create_all(made, tables=[KeySetRow.__table__, SigningKeyRow.__table__])
        return self.engines[backend]

    def close(self) -> None:
        for backend, made in self.engines.items():
            made.dispose()
            if backend == "postgresql":
                drop_postgres_database(POSTGRES_DB)


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyDatabases]:
    made = KeyDatabases(tmp_path_factory.mktemp("key-databases"))
    yield made
    made.close()


def empty_engine(databases: KeyDatabases, backend: str) -> Engine:
    engine = databases.engine(backend)
    empty_key_tables(engine)
    return engine


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, databases: KeyDatabases) -> Engine:
    return empty_engine(databases, request.param)


def empty_key_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(SigningKeyRow))
        conn.execute(delete(KeySetRow))


def database_store(engine: Engine, passphrase: str = PASSPHRASE) -> DatabaseKeyStore:
    return DatabaseKeyStore(engine, passphrase=passphrase, cost=CHEAP)


@pytest.fixture(params=["files", "sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    databases: KeyDatabases,
    made_once: StoredKeys,
    clock: FrozenClock,
) -> KeyStore:
    """Each store, holding the module's keys as made now (the database one on each backend)."""
    chosen: KeyStore
    if request.param == "files":
        chosen = FileKeyStore(tmp_path / "keys")
    else:
        chosen = database_store(empty_engine(databases, request.param))
    chosen.replace_all(fresh(made_once, clock))
    return chosen


@pytest.fixture
def rotation(store: KeyStore, clock: FrozenClock) -> KeyRotation:
    return KeyRotation(store, clock=clock, timings=TIMINGS)


def key(store: KeyStore, alg: str, state: str) -> KeyRecord:
    (record,) = [r for r in store.read_records() if r.alg == alg and r.state == state]
    return record


def kid_of(token: str) -> str:
    kid: str = jws.extract_compact(token.encode()).headers()["kid"]
    return kid


# --- the rules, the same on either store ---------------------------------------------------
def test_rotation_after_the_lead_time_promotes_next_and_retires_active(store, rotation, clock):
    old_active, old_next = key(store, "RS256", "active"), key(store, "RS256", "next")
    clock.advance(LEAD)

    changes = rotation.rotate(["RS256"])

    assert key(store, "RS256", "active").kid == old_next.kid
    assert key(store, "RS256", "active").activated_at == clock.now()
    retired = key(store, "RS256", "retired")
    assert retired.kid == old_active.kid and retired.retired_at == clock.now()
    new_next = key(store, "RS256", "next")
    assert new_next.kid not in {old_active.kid, old_next.kid} and new_next.created_at == clock.now()
    assert [(e.name, e.kid) for e in changes.events] == [("key.rotated", old_next.kid)]
    assert changes.kept == ((retired, clock.now() + GRACE),)
    assert new_next.kid in store.load().private  # its private key was stored with it


def test_next_key_younger_than_the_lead_time_is_refused_and_nothing_changes(store, rotation, clock):
    before = (store.read_records(), store.stamp())
    clock.advance(LEAD - timedelta(seconds=1))

    with pytest.raises(NextKeyTooYoung, match="--force"):
        rotation.rotate(["RS256"])

    assert (store.read_records(), store.stamp()) == before


def test_revoking_the_active_key_promotes_the_next_at_once_and_destroys_its_private_key(
    store, rotation, clock
):
    active, upcoming = key(store, "RS256", "active"), key(store, "RS256", "next")

    rotation.revoke(active.kid)

    assert key(store, "RS256", "revoked").kid == active.kid
    assert key(store, "RS256", "active").kid == upcoming.kid
    assert active.kid not in store.load().private
    if isinstance(store, DatabaseKeyStore):
        with store.engine.connect() as conn:
            sealed = conn.execute(select(SigningKeyRow.private_key).where(SigningKeyRow.kid == active.kid))
            assert sealed.scalar_one() is None
    else:
        assert isinstance(store, FileKeyStore)
        assert not (store.keys_dir / active.file).exists()


def test_prune_removes_a_retired_key_only_after_its_grace_time(store, rotation, clock):
    clock.advance(LEAD)
    rotation.rotate(["ES256"])
    retired = key(store, "ES256", "retired")
    clock.advance(GRACE - timedelta(seconds=1))

    early = rotation.prune()
    clock.advance(timedelta(seconds=1))
    on_time = rotation.prune()

    assert early.events == ()
    assert [(e.name, e.kid) for e in on_time.events] == [("key.pruned", retired.kid)]
    assert retired.kid not in {r.kid for r in store.read_records()}


def test_a_change_whose_audit_fails_leaves_the_set_as_it_was(store, clock):
    def refuse(_events):
        raise RuntimeError("the audit log is full")

    before = (store.read_records(), store.stamp())
    rotation = KeyRotation(store, clock=clock, timings=TIMINGS, record=refuse)

    with pytest.raises(RuntimeError, match="audit"):
        rotation.rotate(["RS256"], force=True)

    assert (store.read_records(), store.stamp()) == before


def test_a_second_ring_picks_up_a_rotation_made_elsewhere_after_the_check_interval(
    store, rotation, clock, monkeypatch
):
    now = [1_000.0]  # the rings' monotonic clock, moved by hand
    monkeypatch.setattr(ring_module, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    serving = KeyRing(store, clock=clock, check_seconds=2)
    old_kid = kid_of(serving.sign({"sub": "account-1"}))
    clock.advance(LEAD)

    rotation.rotate(["RS256"])  # another process: the serving ring holds its own copy of the set
    now[0] += 1.9
    before_check = kid_of(serving.sign({"sub": "x"}))
    now[0] += 0.1
    after_check = kid_of(serving.sign({"sub": "x"}))

    assert before_check == old_kid
    assert after_check == key(store, "RS256", "active").kid != old_kid
    assert {k["kid"] for k in serving.public_jwks()["keys"]} == {
        r.kid for r in store.read_records() if r.state != "revoked"
    }


def test_a_check_without_a_change_reads_the_stamp_and_not_the_keys(store, clock, monkeypatch):
    now = [1_000.0]
    monkeypatch.setattr(ring_module, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    serving = KeyRing(store, clock=clock, check_seconds=2)
    loads = []
    original = store.load
    monkeypatch.setattr(store, "load", lambda: loads.append(1) or original())

    for _ in range(3):
        now[0] += 2
        serving.sign({"sub": "x"})

    assert loads == []


# --- the database store --------------------------------------------------------------------
def sealed_rows(engine: Engine) -> dict[str, tuple[bytes | None, bytes | None]]:
    with engine.connect() as conn:
        rows = conn.execute(select(SigningKeyRow.kid, SigningKeyRow.nonce, SigningKeyRow.private_key))
        return {kid: (nonce, sealed) for kid, nonce, sealed in rows}


def test_private_keys_are_sealed_at_rest_and_open_to_the_same_keys(engine, made_once, clock):
    store = DatabaseKeyStore(engine, passphrase=PASSPHRASE)  # the default Scrypt cost, once

    store.replace_all(fresh(made_once, clock))

    for nonce, sealed in sealed_rows(engine).values():
        assert nonce is not None and len(nonce) == 12
        assert sealed is not None and b"PRIVATE KEY" not in sealed and b"BEGIN" not in sealed
    with engine.connect() as conn:
        cost = conn.execute(select(KeySetRow.kdf_n, KeySetRow.kdf_r, KeySetRow.kdf_p)).one()
    assert tuple(cost) == (2**15, 8, 3)
    opened = DatabaseKeyStore(engine, passphrase=PASSPHRASE).load()
    assert {kid: k.thumbprint() for kid, k in opened.private.items()} == {
        kid: k.thumbprint() for kid, k in made_once.private.items()
    }


def test_a_wrong_passphrase_is_named_as_such_and_stops_the_start(engine, made_once, clock):
    database_store(engine).replace_all(fresh(made_once, clock))

    with pytest.raises(WrongPassphrase, match="IDP_KEYS_PASSPHRASE does not open"):
        database_store(engine, "not the passphrase").load()
    with pytest.raises(KeySetError, match="IDP_KEYS_PASSPHRASE"):
        KeyRing(database_store(engine, "not the passphrase"), clock=clock)


def test_a_change_under_a_wrong_passphrase_is_refused_and_nothing_changes(engine, made_once, clock):
    database_store(engine).replace_all(fresh(made_once, clock))
    before = database_store(engine).read_records()
    wrong = KeyRotation(database_store(engine, "not the passphrase"), clock=clock, timings=TIMINGS)

    with pytest.raises(WrongPassphrase):
        wrong.rotate(["ES256"], force=True)

    assert database_store(engine).read_records() == before


def test_a_replaced_set_is_sealed_again_under_the_replacing_passphrase(engine, made_once, clock):
    database_store(engine, "the old passphrase").replace_all(fresh(made_once, clock))

    database_store(engine, "the new passphrase").replace_all(
        database_store(engine, "the old passphrase").load()
    )

    assert len(database_store(engine, "the new passphrase").load().private) == 4
    with pytest.raises(WrongPassphrase):
        database_store(engine, "the old passphrase").load()


def test_an_altered_private_key_is_refused_by_kid(engine, made_once, clock):
    store = database_store(engine)
    store.replace_all(fresh(made_once, clock))
    target = key(store, "ES256", "active")
    _nonce, sealed = sealed_rows(engine)[target.kid]
    assert sealed is not None
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with engine.begin() as conn:
        conn.execute(update(SigningKeyRow).where(SigningKeyRow.kid == target.kid).values(private_key=flipped))

    with pytest.raises(AlteredKey, match=target.kid):
        store.load()


def test_private_keys_swapped_between_rows_are_refused(engine, made_once, clock):
    store = database_store(engine)
    store.replace_all(fresh(made_once, clock))
    active, upcoming = key(store, "RS256", "active"), key(store, "RS256", "next")
    sealed = sealed_rows(engine)
    with engine.begin() as conn:
        for kid, other in ((active.kid, upcoming.kid), (upcoming.kid, active.kid)):
            nonce, private_key = sealed[other]
            conn.execute(
                update(SigningKeyRow)
                .where(SigningKeyRow.kid == kid)
                .values(nonce=nonce, private_key=private_key)
            )

    with pytest.raises(AlteredKey, match="swapped"):
        store.load()


def test_a_serving_ring_keeps_its_set_when_the_changed_one_does_not_open(
    engine, made_once, clock, monkeypatch, caplog
):
    now = [1_000.0]
    monkeypatch.setattr(ring_module, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    store = database_store(engine)
    store.replace_all(fresh(made_once, clock))
    serving = KeyRing(store, clock=clock, check_seconds=1)
    kid = kid_of(serving.sign({"sub": "x"}))
    with engine.begin() as conn:
        conn.execute(update(SigningKeyRow).where(SigningKeyRow.kid == kid).values(private_key=b"\0" * 64))
        conn.execute(update(KeySetRow).values(generation=KeySetRow.generation + 1))

    now[0] += 1

    assert kid_of(serving.sign({"sub": "x"})) == kid
    assert "still serving the previous one" in caplog.text


def rotate_in_thread(engine: Engine, barrier: threading.Barrier, failures: list[BaseException]) -> None:
    try:
        barrier.wait(timeout=60)
        KeyRotation(database_store(engine), clock=SystemClock(), timings=TIMINGS).rotate(
            ["ES256"], force=True
        )
    except BaseException as error:  # reported by the test
        failures.append(error)


def test_rotations_at_once_from_many_connections_all_land_one_after_another(engine, made_once, clock):
    database_store(engine).replace_all(fresh(made_once, clock))
    workers = 4
    barrier = threading.Barrier(workers)
    failures: list[BaseException] = []
    threads = [
        threading.Thread(target=rotate_in_thread, args=(engine, barrier, failures)) for _ in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    es256 = [r for r in database_store(engine).read_records() if r.alg == "ES256"]
    # Each change read the one before it: no rotation lost, no key promoted twice.
    assert sorted(r.state for r in es256) == ["active", "next"] + ["retired"] * workers


def ensure_in_thread(engine: Engine, barrier: threading.Barrier, failures: list[BaseException]) -> None:
    try:
        barrier.wait(timeout=60)
        database_store(engine).ensure(clock=SystemClock())
    except BaseException as error:  # reported by the test
        failures.append(error)


def test_workers_starting_together_on_an_empty_database_make_one_key_set(engine):
    # Threads with a connection each: the database's locks, not the process, decide who creates.
    workers = 4
    barrier = threading.Barrier(workers)
    failures: list[BaseException] = []
    threads = [
        threading.Thread(target=ensure_in_thread, args=(engine, barrier, failures)) for _ in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    records = database_store(engine).read_records()
    assert sorted((r.alg, r.state) for r in records) == [
        ("ES256", "active"),
        ("ES256", "next"),
        ("RS256", "active"),
        ("RS256", "next"),
    ]
    with engine.connect() as conn:
        assert conn.execute(select(KeySetRow.generation)).scalars().all() == [1]


def test_a_ring_on_a_database_not_migrated_yet_opens_the_store_at_first_use(tmp_path, clock):
    # `idp db upgrade` builds the app, and so the ring, before the key tables exist.
    engine = create_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        ring = KeyRing(database_store(engine), clock=clock)
        with pytest.raises(KeyStoreUnavailable, match="idp db upgrade"):
            ring.sign({"sub": "x"})
        with pytest.raises(KeySetError):
            ring.check_store()  # /readyz says "unavailable"

        Base.metadata.create_all(engine, tables=[KeySetRow.__table__, SigningKeyRow.__table__])

        assert ring.verify(ring.sign({"sub": "x"})).claims == {"sub": "x"}
        ring.check_store()
    finally:
        engine.dispose()


# --- the setting ---------------------------------------------------------------------------
def test_the_database_store_without_a_passphrase_is_refused_at_start():
    with pytest.raises(ConfigError, match=r"IDP_KEYS_STORE=database .* IDP_KEYS_PASSPHRASE"):
        Settings.from_env({"IDP_KEYS_STORE": "database"})
    with pytest.raises(ConfigError, match="IDP_KEYS_STORE must be one of files, database"):
        Settings.from_env({"IDP_KEYS_STORE": "redis"})
    assert Settings.from_env({}).keys_store == "files"
    chosen = Settings.from_env({"IDP_KEYS_STORE": "database", "IDP_KEYS_PASSPHRASE": PASSPHRASE})
    assert chosen.keys_store == "database"


def test_a_database_store_built_without_a_passphrase_is_refused(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'any.db'}")
    try:
        with pytest.raises(KeySetError, match="IDP_KEYS_PASSPHRASE"):
            open_key_store(Settings(keys_store="database"), engine=engine)
    finally:
        engine.dispose()
