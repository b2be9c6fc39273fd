"""Migration 0017 on a database of its own per backend: the key store's tables come and go."""

from __future__ import annotations

from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from idp.extensions import db


def tables() -> set[str]:
    return set(inspect(db.engine).get_table_names())


def test_0017_adds_the_key_store_tables_and_its_downgrade_removes_them(empty_app: Flask):
    upgrade(revision="0016_worker_leases")
    assert not {"key_set", "signing_key"} & tables()

    upgrade(revision="0017_key_store")
    columns = {c["name"] for c in inspect(db.engine).get_columns("signing_key")}
    assert {"key_set", "signing_key"} <= tables()
    assert {"kid", "alg", "state", "nonce", "private_key", "revoked_at"} <= columns

    downgrade(revision="0016_worker_leases")
    assert not {"key_set", "signing_key"} & tables()
