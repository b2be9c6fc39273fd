"""A sign-in's transactions: none open while argon2 runs, and all of the sign-in's writes or none."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.pool import NullPool

from idp.accounts.hashing import BoundedPasswordHasher
from idp.accounts.models import Account
from idp.accounts.sessions import SessionService
from idp.audit import AuditEvent
from idp.extensions import db
from tests.conftest import PASSWORD
from tests.functional import oidc
from tests.functional.locks import sqlite_writer_can_start

# Another connection looks at what each request has committed: no test transaction around it.
pytestmark = pytest.mark.commits


@pytest.fixture
def account_id(make_account: Callable[..., Account]) -> str:
    return make_account(username="dana.rivera").id


def sign_in(client: FlaskClient) -> Any:
    with client.application.app_context():
        return oidc.sign_in(client, "dana.rivera", PASSWORD)


def another_writer_can_start(database_url: str, account_id: str) -> bool:
    """Whether another connection could write the account's row right now, without waiting."""
    if database_url.startswith("sqlite"):
        return sqlite_writer_can_start(database_url)
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SET lock_timeout = '1ms'"))
            conn.execute(text("SELECT id FROM account WHERE id = :id FOR UPDATE"), {"id": account_id})
            conn.rollback()
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


def test_no_writer_waits_while_the_password_is_verified(
    client: FlaskClient, account_id: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []
    verify = BoundedPasswordHasher.verify

    def observing_verify(self: BoundedPasswordHasher, stored_hash: str, password: str) -> bool:
        seen.append(another_writer_can_start(database_url, account_id))
        return verify(self, stored_hash, password)

    monkeypatch.setattr(BoundedPasswordHasher, "verify", observing_verify)
    response = sign_in(client)
    assert response.status_code == 303
    assert seen == [True]
    with client.application.app_context():
        login_count = db.session.execute(select(Account.login_count).where(Account.id == account_id)).scalar()
        assert login_count == 1


def test_no_connection_is_held_while_the_password_is_verified(
    client: FlaskClient, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slow hash, or a connection dropped meanwhile, must cost nobody else a pooled connection.
    held: list[int] = []
    verify = BoundedPasswordHasher.verify

    def observing_verify(self: BoundedPasswordHasher, stored_hash: str, password: str) -> bool:
        held.append(db.engine.pool.checkedout())
        return verify(self, stored_hash, password)

    monkeypatch.setattr(BoundedPasswordHasher, "verify", observing_verify)
    assert sign_in(client).status_code == 303
    assert held == [0]
    with client.application.app_context():
        login_count = db.session.execute(select(Account.login_count).where(Account.id == account_id)).scalar()
        assert login_count == 1


def test_a_sign_in_that_fails_midway_writes_nothing(
    client: FlaskClient, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sign-in was recorded (UPDATE account, the audit row) when the session row fails: all of it
    # must go. A write made outside the transaction (SQLite autocommit) would have stayed.
    def failing_start(self: SessionService, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the session row could not be written")

    monkeypatch.setattr(SessionService, "start", failing_start)
    response = sign_in(client)
    assert response.status_code == 500
    with client.application.app_context():
        login_count = db.session.execute(select(Account.login_count).where(Account.id == account_id)).scalar()
        succeeded = db.session.execute(
            select(AuditEvent.id).where(AuditEvent.name == "signin.succeeded")
        ).all()
        db.session.commit()
    assert login_count == 0
    assert succeeded == []
