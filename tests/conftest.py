"""Shared fixtures: one migrated database per backend, one app per settings, a transaction per test.

Database tests run twice, on SQLite and on the machine's PostgreSQL (``database`` is
parametrised). Under pytest-xdist every worker has its own databases, migrated once, and builds
one app per distinct ``Settings`` (modules may override the ``settings`` fixture). Each test runs
inside a transaction that is rolled back at its end: the session joins it with SAVEPOINTs, so the
code under test commits as usual. A test marked ``commits`` (threads with their own connections,
another connection watching) runs without that transaction and its rows are deleted afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import psycopg
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from idp import create_app
from idp.accounts.models import Account, AccountType
from idp.clock import FrozenClock
from idp.config import Settings
from idp.extensions import db
from idp.oauth.clients import ClientService, ClientSpec
from idp.students.models import Student
from idp.web.context import services
from tests.admin_fixtures import make_admin_client, make_staff, staff_client  # noqa: F401
from tests.receiver import Receiver, backchannel_receiver
from tests.smtp import Inbox, smtp_server

POSTGRES_ADMIN_URL = os.environ.get("IDP_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
# One database per pytest process, so that concurrent runs on one machine never share rows.
POSTGRES_TEST_DB = os.environ.get("IDP_TEST_POSTGRES_DB", f"idp_test_{os.getpid()}")
REDIS_TEST_URL = os.environ.get("IDP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PASSWORD = "correct-horse-battery-staple"
REDIRECT_URI = "https://portal.example.test/callback"


def postgres_url(database: str) -> str:
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{database}"


def recreate_postgres_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_postgres_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


# Counters of this pytest process (one per xdist worker); each test starts with none of them.
REDIS_TEST_PREFIX = f"idp-test:{os.getpid()}:"


def settings_for_tests(database_url: str, keys_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests: cheap argon2 (benchmarks measure the real cost), real Redis."""
    base = Settings(
        env="test",
        issuer="http://localhost",
        database_url=database_url,
        redis_url=REDIS_TEST_URL,
        redis_key_prefix=REDIS_TEST_PREFIX,
        secret_key="test-secret-key-that-is-long-enough-0123456789",
        keys_dir=keys_dir,
        # Mail to files in the session's temporary folder, never into the checkout's instance/outbox.
        smtp_url=f"file://{keys_dir.parent / 'outbox'}",
        argon2_time_cost=1,
        argon2_memory_kib=256,
        argon2_parallelism=1,
    )
    return replace(base, **overrides)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "commits: runs without the per-test transaction (its rows are deleted afterwards)"
    )


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@contextmanager
def empty_database(backend: str, folder: Path, postgres_name: str) -> Iterator[str]:
    """The URL of a new, empty database on ``backend``: a file in ``folder``, or a PostgreSQL
    database called ``postgres_name``, dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'idp.db'}"
        return
    recreate_postgres_database(postgres_name)
    try:
        yield postgres_url(postgres_name)
    finally:
        drop_postgres_database(postgres_name)


class AppCache:
    """The apps built so far in this process, one per distinct ``Settings``, the latest few kept.

    Modules that make settings per test (a folder of their own) would otherwise keep an engine,
    and its pooled connections, for every test.
    """

    def __init__(self, size: int = 6) -> None:
        self.size = size
        self.apps: OrderedDict[Settings, Flask] = OrderedDict()

    def get(self, settings: Settings, clock: FrozenClock) -> Flask:
        app = self.apps.get(settings)
        if app is None:
            app = self.apps[settings] = create_app(settings, clock=clock)
            while len(self.apps) > self.size:
                self.dispose(self.apps.popitem(last=False)[1])
        self.apps.move_to_end(settings)
        return app

    def drop(self, database_url: str) -> None:
        for key in [key for key in self.apps if key.database_url == database_url]:
            self.dispose(self.apps.pop(key))

    @staticmethod
    def dispose(app: Flask) -> None:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture(scope="session")
def _apps() -> Iterator[AppCache]:
    cache = AppCache()
    yield cache
    for app in cache.apps.values():
        cache.dispose(app)


@pytest.fixture(scope="session")
def _clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    keys_dir: Path,
    _apps: AppCache,
    _clock: FrozenClock,
) -> Iterator[str]:
    """A migrated, empty database for each backend, made once per test process."""
    with empty_database(request.param, tmp_path_factory.mktemp("sqlite"), POSTGRES_TEST_DB) as url:
        with _apps.get(settings_for_tests(url, keys_dir), _clock).app_context():
            from flask_migrate import upgrade

            upgrade()
        yield url
        _apps.drop(url)


def delete_all_rows() -> None:
    """Empty every table, through the current app's engine (for tests that really commit)."""
    with db.engine.begin() as conn:
        for table in reversed(db.metadata.sorted_tables):
            conn.execute(table.delete())


def forget_counters() -> None:
    """Delete this process's lockout and rate-limit counters from the test Redis."""
    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        keys = list(client.scan_iter(match=f"{REDIS_TEST_PREFIX}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def clock(_clock: FrozenClock) -> FrozenClock:
    """The clock of every app this process builds, set to the present at the start of each test."""
    _clock.set(datetime.now(UTC).replace(microsecond=0))
    return _clock


@pytest.fixture
def settings(database_url: str, keys_dir: Path) -> Settings:
    return settings_for_tests(database_url, keys_dir)


@contextmanager
def rolled_back() -> Iterator[None]:
    """Bind the session to a connection whose transaction is rolled back at the end."""
    connection = db.engine.connect()
    outer = connection.begin()
    db.session.remove()
    db.session.session_factory.configure(bind=connection, join_transaction_mode="create_savepoint")
    try:
        yield
    finally:
        db.session.remove()
        db.session.session_factory.configure(bind=None, join_transaction_mode="conditional_savepoint")
        outer.rollback()
        connection.close()


@pytest.fixture
def app(
    request: pytest.FixtureRequest, settings: Settings, clock: FrozenClock, _apps: AppCache
) -> Iterator[Flask]:
    app = _apps.get(settings, clock)
    app.config["TESTING"] = True
    forget_counters()
    with app.app_context():
        if request.node.get_closest_marker("commits") is None:
            with rolled_back():
                yield app
        else:
            try:
                yield app
            finally:
                db.session.remove()
                delete_all_rows()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A portal's back-channel logout endpoint (tests/receiver.py), for ``make_client``."""
    with backchannel_receiver() as running:
        yield running


# --- factories ----------------------------------------------------------------------------
# --- a mail folder per module (a module overrides ``settings`` to write to it) --------------
@pytest.fixture(scope="module")
def module_outbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's mail folder: one folder, so one ``Settings`` and one app, for all its tests."""
    return tmp_path_factory.mktemp("outbox")


@pytest.fixture
def outbox(module_outbox: Path) -> Path:
    """The module's mail folder, emptied of earlier tests' mail before the app is set up."""
    shutil.rmtree(module_outbox, ignore_errors=True)
    return module_outbox


# --- a real SMTP server per module (a module overrides ``settings`` to send to it) ----------
@pytest.fixture(scope="module")
def module_mailbox() -> Iterator[tuple[Inbox, int]]:
    """One SMTP server for the module: one port, so one ``Settings`` and one app, for all its tests."""
    with smtp_server() as server:
        yield server


@pytest.fixture
def mailbox(module_mailbox: tuple[Inbox, int]) -> tuple[Inbox, int]:
    """The module's SMTP server, emptied of earlier tests' mail before the app is set up."""
    module_mailbox[0].clear()
    return module_mailbox


@pytest.fixture
def make_account(app: Flask) -> Callable[..., Account]:
    counter = iter(range(1, 10_000))

    def make(**fields: Any) -> Account:
        n = next(counter)
        values: dict[str, Any] = {
            "username": f"parent{n}",
            "email": f"parent{n}@example.org",
            "password": PASSWORD,
            "first_name": "Pat",
            "last_name": f"Parent{n}",
            "account_type": AccountType.PARENT,
        }
        values.update(fields)
        account = services().accounts().create(**values)
        db.session.commit()
        return account

    return make


@pytest.fixture
def make_student(app: Flask) -> Callable[..., Student]:
    counter = iter(range(1, 10_000))

    def make(**fields: Any) -> Student:
        n = next(counter)
        values: dict[str, Any] = {
            "sis_id": f"S{1000 + n}",
            "first_name": f"Kid{n}",
            "last_name": "Student",
            "school_code": "LES",
            "access_id": f"ACCESS-{n}",
            "access_password": f"pass-{n}",
        }
        values.update(fields)
        student = services().guardianship().create_student(**values)
        db.session.commit()
        return student

    return make


@dataclass(frozen=True)
class RegisteredTestClient:
    client_id: str
    client_secret: str | None
    redirect_uri: str


@pytest.fixture
def make_client(app: Flask) -> Callable[..., RegisteredTestClient]:
    def make(**fields: Any) -> RegisteredTestClient:
        values: dict[str, Any] = {
            "name": "Test Portal",
            "redirect_uris": [REDIRECT_URI],
            "first_party": True,
        }
        values.update(fields)
        registered = ClientService(db.session).create(ClientSpec(**values))
        db.session.commit()
        return RegisteredTestClient(
            registered.client.client_id, registered.client_secret, values["redirect_uris"][0]
        )

    return make


# --- an authorization-request builder -----------------------------------------------------
def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass
class AuthRequest:
    """Builds /authorize parameters with PKCE, state and nonce, and reads the redirect back."""

    client_id: str
    redirect_uri: str = REDIRECT_URI
    scope: str = "openid profile email students"
    state: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    extra: dict[str, str] = field(default_factory=dict)
    omit: tuple[str, ...] = ()

    def params(self) -> dict[str, str]:
        values = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": s256(self.verifier),
            "code_challenge_method": "S256",
        }
        values.update(self.extra)
        return {k: v for k, v in values.items() if k not in self.omit}

    def url(self, base: str = "") -> str:
        return f"{base}/authorize?{urlencode(self.params())}"


def redirect_params(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def csrf_token(html: str) -> str:
    import re

    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'id="csrf_token" name="csrf_token" type="hidden" value="([^"]+)"', html
    )
    assert match, "no CSRF token on the page"
    return match.group(1)


def hidden_field(html: str, name: str) -> str:
    import re

    match = re.search(rf'name="{name}" type="hidden" value="([^"]*)"', html)
    assert match, f"no hidden field {name}"
    return match.group(1)
