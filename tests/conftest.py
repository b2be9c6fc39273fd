"""Shared fixtures: one migrated database per backend, an app per test, factories, a frozen clock.

Database tests run twice, on SQLite and on the machine's PostgreSQL (``database`` is
parametrised). Migrations run once per backend and session; every test ends by deleting
all rows, which works for gunicorn-based tests too (they cannot share a test transaction).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine

from idp import create_app
from idp.accounts.models import Account, AccountType
from idp.clock import FrozenClock
from idp.config import Settings
from idp.extensions import db
from idp.oauth.clients import ClientService, ClientSpec
from idp.runtime import runtime
from idp.students.models import Student

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


def settings_for_tests(database_url: str, keys_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests: cheap argon2 (benchmarks measure the real cost), real Redis."""
    base = Settings(
        env="test",
        issuer="http://localhost",
        database_url=database_url,
        redis_url=REDIS_TEST_URL,
        # Counters of their own for every app: concurrent runs and earlier tests never meet.
        redis_key_prefix=f"idp-test:{secrets.token_hex(8)}:",
        secret_key="test-secret-key-that-is-long-enough-0123456789",
        keys_dir=keys_dir,
        # Mail to files in the session's temporary folder, never into the checkout's instance/outbox.
        smtp_url=f"file://{keys_dir.parent / 'outbox'}",
        argon2_time_cost=1,
        argon2_memory_kib=256,
        argon2_parallelism=1,
    )
    return replace(base, **overrides)


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


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> Iterator[str]:
    """A migrated, empty database for each backend, made once per test session."""
    with empty_database(request.param, tmp_path_factory.mktemp("sqlite"), POSTGRES_TEST_DB) as url:
        app = create_app(settings_for_tests(url, keys_dir))
        with app.app_context():
            from flask_migrate import upgrade

            upgrade()
            db.engine.dispose()
        yield url


def truncate_all(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for table in reversed(db.metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def settings(database_url: str, keys_dir: Path) -> Settings:
    return settings_for_tests(database_url, keys_dir)


@pytest.fixture
def app(settings: Settings, clock: FrozenClock, database_url: str) -> Iterator[Flask]:
    app = create_app(settings, clock=clock)
    app.config["TESTING"] = True
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()
    truncate_all(database_url)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# --- factories ----------------------------------------------------------------------------
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
        account = runtime().accounts().create(**values)
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
        student = runtime().guardianship().create_student(**values)
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
