"""Migration 0018: the device columns come and go; the sign-ins' times and addresses stay."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from idp.extensions import db


def account_columns() -> set[str]:
    return {column["name"] for column in inspect(db.engine).get_columns("account")}


# SQLite's reflection cannot read an index on an expression (lower(email)); the columns are what matter.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_the_device_columns_are_added_empty_and_removed_again(empty_app: Flask) -> None:
    upgrade(revision="0017_key_store")
    signed_in_at = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    db.session.execute(
        text(
            "INSERT INTO account (id, type, username, username_key, username_skeleton, email,"
            " first_name, last_name, password_hash, password_scheme, must_change_password, status,"
            " login_count, last_login_at, last_login_ip, created_at, is_test_account)"
            " VALUES ('a1', 'parent', 'dana', 'dana', 'dana', 'dana@example.org', 'Dana', 'Rivera',"
            " 'x', 'argon2id', false, 'confirmed', 1, :at, '203.0.113.7', :at, false)"
        ),
        {"at": signed_in_at},
    )
    db.session.commit()

    upgrade(revision="0018_last_sign_in_device")
    assert {"last_login_device", "current_login_device"} <= account_columns()
    row = db.session.execute(text("SELECT last_login_ip, last_login_device FROM account")).one()
    assert tuple(row) == ("203.0.113.7", None)
    db.session.execute(text("UPDATE account SET last_login_device = 'Firefox (Windows)'"))
    db.session.commit()

    downgrade(revision="0017_key_store")
    assert not {"last_login_device", "current_login_device"} & account_columns()
    assert db.session.execute(text("SELECT last_login_ip FROM account")).scalar_one() == "203.0.113.7"
