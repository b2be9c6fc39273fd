"""Two processes' worth of the provider without Redis (its URL points where nothing listens), on one
database: the database counts for both, so the lockout's budget stays one.

Each app is what one process builds (its own Services, counters, Redis health and engine). The
counters commit on connections of their own: these tests run without the per-test transaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from idp import create_app
from idp.accounts.models import Account
from idp.audit import AuditEvent
from idp.clock import FrozenClock
from idp.config import Settings
from idp.extensions import db
from tests.conftest import PASSWORD, settings_for_tests
from tests.functional import oidc
from tests.redis_server import free_port

pytestmark = pytest.mark.commits

THRESHOLD = 10
INVALID = "Invalid username or password."
LOCKED = re.compile(r"This account is locked because of too many failed sign-in attempts\.")


@pytest.fixture
def settings(database_url: str, keys_dir: Path) -> Settings:
    return settings_for_tests(
        database_url,
        keys_dir,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        lockout_threshold=THRESHOLD,
        rate_limit_signin="10000/minute",
    )


@pytest.fixture
def other_process(app: Flask, settings: Settings, clock: FrozenClock) -> Iterator[Flask]:
    """A second app on the same settings and database: another process's state."""
    other = create_app(settings, clock=clock)
    other.config["TESTING"] = True
    yield other
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


def sign_in(app: Flask, password: str) -> str:
    """Sign in from a new browser of ``app``; return the page (a 303 returns "signed in")."""
    with app.app_context():
        response = oidc.sign_in(app.test_client(), "dana.rivera", password)
    if response.status_code == 303:
        return "signed in"
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def events(name: str) -> int:
    query = select(func.count()).select_from(AuditEvent).where(AuditEvent.name == name)
    found = int(db.session.execute(query).scalar_one())
    db.session.commit()  # end the read: SQLite's BEGIN IMMEDIATE would hold off the next request
    return found


def test_two_processes_without_redis_count_one_budget(
    app: Flask, other_process: Flask, make_account: Callable[..., Account]
) -> None:
    make_account(username="dana.rivera")
    processes = [app, other_process]
    pages = [sign_in(processes[n % 2], f"guess-{n}") for n in range(THRESHOLD)]
    # Five failures in each process, ten in the database: the tenth locks (and answers as a failure).
    assert all(INVALID in page for page in pages)
    assert events("signin.failed") == THRESHOLD and events("account.locked") == 1

    for process in processes:
        assert LOCKED.search(sign_in(process, PASSWORD))
        with process.app_context():
            ready = process.test_client().get("/readyz")
        assert ready.status_code == 200 and ready.json is not None
        assert ready.json == {"status": "degraded", "database": "ok", "keys": "ok", "redis": "degraded"}
    assert events("signin.refused") == 2
