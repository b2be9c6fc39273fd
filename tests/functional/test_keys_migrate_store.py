"""``idp keys migrate-store`` both ways, and ``idp keys`` on the database store, through the CLI.

Each backend gets a migrated database of its own for the module; each test starts with empty key
tables and key folders of its own, and builds the apps it needs (one per IDP_KEYS_STORE), as an
operator runs the commands before and after switching the setting. Scrypt runs at a low cost.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import create_engine, delete, select

from idp import create_app
from idp.audit import AuditEvent
from idp.clock import FrozenClock
from idp.extensions import db
from idp.keys import database as database_module
from idp.keys.cipher import ScryptCost
from idp.keys.database import DatabaseKeyStore
from idp.keys.files import FileKeyStore
from idp.keys.models import KeySetRow, SigningKeyRow
from idp.keys.ring import KeyRing
from idp.keys.store import KeyRecord, KeySetError
from idp.keys.stores import open_key_store
from idp.web.context import services
from tests.conftest import empty_database, settings_for_tests

PASSPHRASE = "the district's key passphrase, kept in the vault"
MIGRATE_DB = f"idp_test_keys_migrate_{os.getpid()}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("migrate-store")
    with empty_database(request.param, folder, MIGRATE_DB) as url:
        app = create_app(settings_for_tests(url, folder / "keys-for-migrating"))
        with app.app_context():
            from flask_migrate import upgrade

            upgrade()
            db.engine.dispose()
        yield url


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database_module, "ScryptCost", lambda n=2**10, r=8, p=1: ScryptCost(n, r, p))


@pytest.fixture
def apps(database: str, tmp_path: Path, clock: FrozenClock) -> Iterator[Callable[..., Flask]]:
    """Build an app on the module's database with empty key tables, for a store and a folder."""
    built: list[Flask] = []

    def build(store: str, folder: str = "keys") -> Flask:
        settings = replace(
            settings_for_tests(database, tmp_path / folder),
            keys_store=store,
            keys_passphrase=PASSPHRASE,
        )
        app = create_app(settings, clock=clock)
        built.append(app)
        return app

    emptied = build("files", "unused")
    with emptied.app_context(), db.engine.begin() as conn:
        conn.execute(delete(SigningKeyRow))
        conn.execute(delete(KeySetRow))
        conn.execute(delete(AuditEvent))
    yield build
    for app in built:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def run(app: Flask, *args: str) -> Result:
    with app.app_context():
        result = app.test_cli_runner().invoke(args=list(args))
        db.session.remove()
    return result


def facts(records: tuple[KeyRecord, ...]) -> set[tuple[Any, ...]]:
    return {
        (r.kid, r.alg, r.state, r.created_at, r.activated_at, r.retired_at, r.revoked_at) for r in records
    }


def thumbprints(app: Flask) -> dict[str, str]:
    with app.app_context():
        loaded = services().key_store.load()
    return {kid: key.thumbprint() for kid, key in loaded.private.items()}


def database_store(app: Flask) -> DatabaseKeyStore:
    with app.app_context():
        return DatabaseKeyStore(db.engine, passphrase=PASSPHRASE)


def audited(app: Flask, name: str) -> list[dict[str, Any]]:
    with app.app_context():
        rows = db.session.execute(select(AuditEvent).where(AuditEvent.name == name)).scalars().all()
        details = [dict(row.details) for row in rows]
        db.session.remove()
    return details


def one_line_failure(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_migrate_to_the_database_copies_every_key_state_and_time_and_prints_no_private_key(apps):
    files_app = apps("files")
    # Every state in the set: a retired key (rotated out), a revoked one, the active and next ones.
    assert run(files_app, "keys", "rotate", "--alg", "RS256", "--force").exit_code == 0
    with files_app.app_context():
        upcoming_es256 = next(
            r.kid for r in services().key_store.read_records() if r.alg == "ES256" and r.state == "next"
        )
    assert run(files_app, "keys", "revoke", upcoming_es256).exit_code == 0
    with files_app.app_context():
        manifest = services().key_store.read_records()
    assert {r.state for r in manifest} == {"active", "next", "retired", "revoked"}

    result = run(files_app, "keys", "migrate-store", "--to", "database")

    assert result.exit_code == 0, result.output
    for record in manifest:
        assert record.kid in result.stdout
    assert "read back and verified" in result.stdout and "IDP_KEYS_STORE=database" in result.stdout
    assert "PRIVATE" not in result.output and "BEGIN" not in result.output
    assert facts(database_store(files_app).read_records()) == facts(manifest)
    database_app = apps("database", "keys-unused-by-the-database-store")
    assert thumbprints(database_app) == thumbprints(files_app)
    (details,) = audited(files_app, "key_set.copied")
    assert details["source"] == "files" and details["destination"] == "database"

    # A second copy would overwrite the set now in use: refused unless asked for.
    refused = run(files_app, "keys", "migrate-store", "--to", "database")
    assert "--replace" in one_line_failure(refused)
    replaced = run(files_app, "keys", "migrate-store", "--to", "database", "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert "previous set replaced" in replaced.stdout

    same_store = run(files_app, "keys", "migrate-store", "--to", "files")
    assert "IDP_KEYS_STORE names the files store already" in one_line_failure(same_store)


def test_keys_commands_work_on_the_database_store_and_the_set_migrates_back_to_files(apps, clock):
    # Its IDP_KEYS_DIR, unused by the database store, is the folder migrate-store fills.
    database_app = apps("database")
    with database_app.app_context():
        first = services().key_store.read_records()
    listed = run(database_app, "keys", "list")
    assert listed.exit_code == 0 and {r.kid for r in first} <= set(listed.stdout.split())
    as_json = json.loads(run(database_app, "keys", "list", "--json").stdout)
    assert {e["kid"] for e in as_json} == {r.kid for r in first} and not any("file" in e for e in as_json)
    old_active = next(r.kid for r in first if r.alg == "RS256" and r.state == "active")

    rotated = run(database_app, "keys", "rotate", "--alg", "RS256", "--force")

    assert rotated.exit_code == 0, rotated.output
    with database_app.app_context():
        records = services().key_store.read_records()
        signing_kid = services().keys.signing_key_set("RS256").keys[0].kid
    new_active = next(r.kid for r in records if r.alg == "RS256" and r.state == "active")
    assert new_active != old_active and signing_kid == new_active
    assert [d["kid"] for d in audited(database_app, "key.rotated")] == [new_active]

    back = run(database_app, "keys", "migrate-store", "--to", "files")

    assert back.exit_code == 0, back.output
    files_app = apps("files")  # after the switch back: the same folder
    with files_app.app_context():
        copied = FileKeyStore(services().settings.keys_dir, passphrase=PASSPHRASE).read_records()
    assert facts(copied) == facts(records)
    assert thumbprints(files_app) == thumbprints(database_app)


def test_the_key_ring_refuses_to_start_on_the_database_store_with_a_wrong_passphrase(
    apps, database, tmp_path, clock
):
    apps("database")  # makes the set, sealed with PASSPHRASE
    wrong = replace(
        settings_for_tests(database, tmp_path / "keys"),
        keys_store="database",
        keys_passphrase="not the passphrase",
    )
    engine = create_engine(database)
    try:
        # What the composition root (idp.services) does at start, on the settings given.
        with pytest.raises(KeySetError, match="IDP_KEYS_PASSPHRASE does not open"):
            KeyRing(open_key_store(wrong, engine=engine), clock=clock)
    finally:
        engine.dispose()
