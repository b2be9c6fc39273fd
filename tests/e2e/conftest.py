"""End-to-end harness: real gunicorn processes of the provider, prepared with the real ``idp`` CLI.

Each test runs once on SQLite (a temporary file) and once on PostgreSQL (``idp_e2e_<pid>``,
created empty and dropped afterwards; ``IDP_TEST_POSTGRES_E2E_DB`` names another).
Per backend, the operator's commands run once (``idp db upgrade``, ``students create``,
``accounts create``, ``clients create``; in this process, see ``run_idp``), and one provider with two
workers serves the tests that need no special process layout; tests that need their own
processes start them with ``start_providers``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
import requests
from playwright.sync_api import Browser, sync_playwright

from idp import create_app
from idp.config import Settings
from idp.extensions import db
from tests.conftest import (
    PASSWORD,
    REDIRECT_URI,
    drop_postgres_database,
    postgres_url,
    recreate_postgres_database,
)
from tests.e2e.ready import READY_LINE

ROOT = Path(__file__).resolve().parents[2]
# The virtualenv running pytest holds the `idp` and `gunicorn` commands too.
BIN = Path(sys.executable).parent
GUNICORN_CONF = Path(__file__).with_name("gunicorn_conf.py")
# One database per pytest process, as in tests/conftest.py: concurrent runs never share rows.
E2E_POSTGRES_DB = os.environ.get("IDP_TEST_POSTGRES_E2E_DB", f"idp_e2e_{os.getpid()}")
E2E_REDIS_URL = "redis://127.0.0.1:6379/14"
SECRET_KEY = "e2e-secret-key-that-is-long-enough-0123456789abcdef"
START_TIMEOUT = 20.0
# Screenshots of the browser tests; Debian's chromium, never a browser Playwright downloads.
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
HTTP_TIMEOUT = 15.0


@dataclass(frozen=True)
class LinkedStudent:
    sis_id: str = "100234"
    first_name: str = "Zoe"
    last_name: str = "Rivera"
    school: str = "LES"
    relationship: str = "Mother"


@dataclass(frozen=True)
class District:
    """What the operator set up with the CLI: one parent linked to one student, one portal."""

    database_url: str
    keys_dir: Path
    client_id: str
    client_secret: str
    username: str = "dana.rivera"
    password: str = PASSWORD
    redirect_uri: str = REDIRECT_URI
    student: LinkedStudent = field(default_factory=LinkedStudent)


def provider_env(database_url: str, keys_dir: Path, *, issuer: str, **extra: str) -> dict[str, str]:
    """Return the environment of a provider process: this machine's one, minus any IDP_* setting."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("IDP_")}
    env.update(
        IDP_ENV="test",
        IDP_ISSUER=issuer,
        IDP_DATABASE_URL=database_url,
        IDP_KEYS_DIR=str(keys_dir),
        # Mail beside the keys, in the test's temporary folder, not in the checkout's instance/outbox.
        IDP_SMTP_URL=f"file://{keys_dir.parent / 'outbox'}",
        IDP_SECRET_KEY=SECRET_KEY,
        IDP_REDIS_URL=E2E_REDIS_URL,
        # Lockout and rate-limit counters of this pytest process only (a test may pass its own).
        IDP_REDIS_KEY_PREFIX=f"idp-e2e:{os.getpid()}:",
        IDP_ARGON2_TIME_COST="1",
        IDP_ARGON2_MEMORY_KIB="256",
    )
    env.update(extra)
    return env


# One command at a time: the test runner swaps sys.stdout for the whole process, and building an
# app compiles Werkzeug's routes through ``ast``, which CPython 3.11 does not allow in two threads
# at once ("AST constructor recursion depth mismatch").
_ONE_COMMAND = threading.Lock()


def run_idp(env: dict[str, str], *args: str) -> str:
    """Run one ``idp`` command as an operator would and return its stdout; fail on a non-zero exit.

    It is the real command (``idp.cli``, on an app built from ``env``'s settings) run in this
    process: a new interpreter would load the whole app again, two seconds of CPU a command.
    """
    with _ONE_COMMAND:
        app = create_app(Settings.from_env(env))
        try:
            with app.app_context():
                result = app.test_cli_runner().invoke(args=list(args))
        finally:
            with app.app_context():
                db.engine.dispose()
    if result.exit_code != 0:
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        raised = "".join(traceback.format_exception(result.exception)) if crashed else ""
        output = f"{result.stderr}{result.stdout}{raised}"
        pytest.fail(f"idp {' '.join(args)} exited {result.exit_code}:\n{output}")
    return result.stdout


def create_student(
    env: dict[str, str],
    sis_id: str,
    first_name: str,
    last_name: str,
    *,
    school: str,
    access_id: str,
    access_password: str,
) -> str:
    """``idp students create``: a student families link with an Access ID and Access Password;
    return the student's ID number."""
    run_idp(
        env,
        *("students", "create", "--id", sis_id, "--first-name", first_name, "--last-name", last_name),
        *("--school", school, "--access-id", access_id, "--access-password", access_password),
    )
    return sis_id


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Provider:
    """One gunicorn process of the provider, its URL, and the log it writes."""

    url: str
    workers: int
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    failure_reported: bool = False

    def log(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def ready_workers(self) -> int:
        return self.log().count(READY_LINE)

    def answers_health(self) -> bool:
        try:
            response = requests.get(f"{self.url}/healthz", timeout=1)
        except requests.RequestException:
            return False
        with response:
            return response.status_code == 200

    def terminate(self) -> int | None:
        """Ask gunicorn to stop; return its exit code if it had already died on its own."""
        died = self.process.poll()
        if died is None:
            self.process.terminate()
        return died

    def wait_stopped(self, died: int | None) -> None:
        """Reap gunicorn and its workers; fail with the log if it had died on its own."""
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # the process group this harness created
            self.process.wait(timeout=5)
        log = self.log()
        self.log_file.close()
        if died is not None and not self.failure_reported:
            pytest.fail(f"gunicorn at {self.url} died during the test (exit {died}):\n{log}")


def launch(
    env: dict[str, str],
    port: int,
    log_path: Path,
    *,
    workers: int,
    threads: int,
    app: str = "idp:create_app()",
) -> Provider:
    """Start ``app`` (the provider by default) under gunicorn; the ``Provider`` handle stops it."""
    command = [
        str(BIN / "gunicorn"),
        app,
        *("--config", str(GUNICORN_CONF), "--bind", f"127.0.0.1:{port}"),
        *("--workers", str(workers), "--graceful-timeout", "5"),
        # Several gunicorns run at once here: none may take the shared default control socket.
        "--no-control-socket",
    ]
    if threads > 1:
        command += ["--worker-class", "gthread", "--threads", str(threads)]
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        command,
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Provider(f"http://127.0.0.1:{port}", workers, process, log_path, log_file)


def wait_until_ready(providers: list[Provider], timeout: float = START_TIMEOUT) -> None:
    """Wait until every worker of every provider has loaded the app and /healthz answers."""
    deadline = time.monotonic() + timeout
    waiting = list(providers)
    while waiting:
        for provider in list(waiting):
            code = provider.process.poll()
            if code is not None:
                provider.failure_reported = True
                pytest.fail(f"gunicorn at {provider.url} exited {code} while starting:\n{provider.log()}")
            if provider.ready_workers() >= provider.workers and provider.answers_health():
                waiting.remove(provider)
        if waiting and time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.url}\n{p.log()}" for p in waiting)
            pytest.fail(f"gunicorn not ready within {timeout:.0f} s:\n{logs}")
        if waiting:
            time.sleep(0.1)


class ProviderPool:
    """Starts providers together and stops every one of them, whatever happens."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Provider] = []

    def start(
        self,
        database_url: str,
        keys_dir: Path,
        *,
        count: int = 1,
        workers: int = 1,
        threads: int = 1,
        issuer: str | None = None,
        behind_one_issuer: bool = False,
        **extra_env: str,
    ) -> list[Provider]:
        """Start ``count`` gunicorn processes at once; each one's issuer is its own URL unless given,
        or the first one's for all of them (``behind_one_issuer``, as behind a load balancer)."""
        ports = [free_port() for _ in range(count)]
        if behind_one_issuer:
            issuer = f"http://127.0.0.1:{ports[0]}"
        batch = []
        for port in ports:
            env = provider_env(
                database_url, keys_dir, issuer=issuer or f"http://127.0.0.1:{port}", **extra_env
            )
            log_path = self.log_dir / f"gunicorn-{port}.log"
            provider = launch(env, port, log_path, workers=workers, threads=threads)
            self.started.append(provider)
            batch.append(provider)
        wait_until_ready(batch)
        return batch

    def stop_all(self) -> None:
        # Signal every process first, then reap them: they shut down in parallel.
        exits = [(provider, provider.terminate()) for provider in self.started]
        self.started.clear()
        failures = []
        for provider, died in exits:
            try:
                provider.wait_stopped(died)
            except pytest.fail.Exception as failure:
                failures.append(str(failure))
        if failures:
            pytest.fail("\n".join(failures))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep each end-to-end test to the backends it names, and under pytest-xdist keep each
    module's tests of one backend on one worker.

    A test whose subject is the database across processes (counters, locks, SQLite's one writer
    under gunicorn) runs on both backends. A flow through browsers, portals and key rotation
    names PostgreSQL alone (``e2e_backends``): its SQL runs on both in the functional tests, and
    a second pass through the same pages doubled the end-to-end share of the suite.
    """
    kept, dropped = [], []
    for item in items:
        backend = getattr(getattr(item, "callspec", None), "params", {}).get("e2e_database")
        if backend is None or not item.path.is_relative_to(Path(__file__).parent):
            kept.append(item)
            continue
        named = item.get_closest_marker("e2e_backends")
        if named is not None and backend not in named.args:
            dropped.append(item)
            continue
        # A group per module and backend: a module's tests share its provider, and the modules
        # spread over the workers (each worker prepares its own district once per backend).
        item.add_marker(pytest.mark.xdist_group(f"e2e-{backend}-{item.path.stem}"))
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


# --- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail(
            "chromium is not installed; the browser tests need Debian's package "
            "(apt-get install -y chromium; scripts/test.sh installs it)."
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def e2e_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database per backend (no schema yet: ``idp db upgrade`` makes it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('e2e-sqlite') / 'idp.db'}"
        return
    recreate_postgres_database(E2E_POSTGRES_DB)
    yield postgres_url(E2E_POSTGRES_DB)
    drop_postgres_database(E2E_POSTGRES_DB)


@pytest.fixture(scope="session")
def district(e2e_database: str, tmp_path_factory: pytest.TempPathFactory) -> District:
    """Migrate the database and add a student, a linked parent and a portal, all through the CLI."""
    keys_dir = tmp_path_factory.mktemp("e2e-keys")
    # The CLI makes no tokens: the issuer only has to be a valid setting.
    env = provider_env(e2e_database, keys_dir, issuer="http://127.0.0.1")
    student = LinkedStudent()
    run_idp(env, "db", "upgrade")
    create_client = (
        *("clients", "create", "--name", "Lincoln Portal", "--redirect-uri", REDIRECT_URI),
        *("--first-party", "--json"),
    )
    create_student(
        env,
        student.sis_id,
        student.first_name,
        student.last_name,
        school=student.school,
        access_id="ZR-4821",
        access_password="tiger-lily-42",
    )
    output = run_idp(env, *create_client)
    run_idp(
        env,
        *("accounts", "create", "--username", "Dana.Rivera", "--email", "dana@example.org"),
        *("--password", PASSWORD, "--first-name", "Dana", "--last-name", "Rivera"),
        *("--link", f"{student.sis_id}:{student.relationship}"),
    )
    registered = json.loads(output)  # stdout holds the JSON and nothing else
    assert set(registered) == {"client_id", "client_secret"}, output
    return District(e2e_database, keys_dir, registered["client_id"], registered["client_secret"])


@pytest.fixture(scope="session")
def provider(district: District, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    """One provider per backend with two threaded workers, shared by the tests that need no other."""
    pool = ProviderPool(tmp_path_factory.mktemp("e2e-logs"))
    try:
        (started,) = pool.start(district.database_url, district.keys_dir, workers=2, threads=4)
        yield started
    finally:
        pool.stop_all()


@pytest.fixture
def start_providers(tmp_path: Path) -> Iterator[ProviderPool]:
    """Start extra providers for one test; all of them stop when it ends."""
    pool = ProviderPool(tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()
