"""The deployment on real parts, as a district runs it, without Docker.

From the wheel installed into a new virtualenv: two gunicorn instances (the shipped
``idp.gunicorn_conf``) and two ``idp worker`` processes, in production mode, on a PostgreSQL
database, a Redis and an SMTP server (aiosmtpd) of the test's own, behind Debian's Caddy as the
TLS proxy, configured as the shipped deploy/caddy/Caddyfile with a local CA the test makes.
Through the proxy a parent signs in to a portal (authorize, sign-in, code, token), and recovery
mail reaches the SMTP server exactly once with both workers polling, also after PostgreSQL ends
one worker's connections; with Redis stopped, /readyz says what docs/deployment.md says.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import subprocess
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from requests.adapters import HTTPAdapter

from tests.conftest import (
    PASSWORD,
    POSTGRES_ADMIN_URL,
    REDIRECT_URI,
    AuthRequest,
    csrf_token,
    drop_postgres_database,
    postgres_url,
    recreate_postgres_database,
)
from tests.database_drops import terminate_application
from tests.e2e.conftest import HTTP_TIMEOUT, District, free_port
from tests.e2e.flows import describe, fetch_json, obtain_code, redeem, verify_id_token
from tests.e2e.stack import (
    CADDY,
    WAIT,
    Process,
    Processes,
    answers,
    caddyfile,
    make_root_ca,
    wait_until,
)
from tests.e2e.wheel import build_wheel, install_into_new_venv, outside_env
from tests.redis_server import RedisServer
from tests.smtp import Inbox, link_in, smtp_server

# One backend: the subject is the processes and the proxy. The test makes its own database.
pytestmark = [pytest.mark.e2e, pytest.mark.e2e_backends("postgresql")]

POLL_SECONDS = 1
# The passes each worker makes after a mail arrived, before the test counts copies.
PASSES_AFTER_DELIVERY = 2
USERNAME = "dana.rivera"
EMAIL = "dana@example.org"
# The visitor asking for mail connects to the proxy from its own loopback address (the proxy
# reaches the instances from 127.0.0.1) and claims another one in X-Forwarded-For.
VISITOR_ADDRESS = "127.0.0.2"
FORGED_ADDRESS = "203.0.113.9"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheel = build_wheel(tmp_path_factory.mktemp("stack-source"), tmp_path_factory.mktemp("stack-dist"))
    return install_into_new_venv(wheel, tmp_path_factory.mktemp("stack-venv"))


class Operator:
    """Runs the installed ``idp`` commands an operator types, several at once if need be."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self.running: list[subprocess.Popen[str]] = []

    def spawn(self, command: list[str]) -> subprocess.Popen[str]:
        started = subprocess.Popen(
            command,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.running.append(started)
        return started

    def finish(self, command: subprocess.Popen[str]) -> str:
        """Wait for ``command`` and return its stdout; fail with its output on a non-zero exit."""
        stdout, stderr = command.communicate(timeout=WAIT)
        if command.returncode != 0:
            pytest.fail(f"{command.args!r} exited {command.returncode}:\n{stderr}{stdout}")
        return stdout

    def kill_all(self) -> None:
        for command in self.running:
            if command.poll() is None:
                command.kill()
                command.communicate()


# --- the database as the test sees it ----------------------------------------------------
def wait_for_passes(database: str, application_names: list[str], passes: int) -> None:
    """Wait until each worker has used the database after each of ``passes`` successive marks
    (PostgreSQL's clock): every worker has then begun at least ``passes - 1`` polls since the first."""
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:

        def last_activity(application_name: str) -> datetime.datetime | None:
            # When the worker's connections last began or ended a statement.
            row = admin.execute(
                "SELECT max(state_change) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                (database, application_name),
            ).fetchone()
            return row[0] if row else None

        for _ in range(passes):
            row = admin.execute("SELECT clock_timestamp()").fetchone()
            assert row is not None
            mark: datetime.datetime = row[0]

            def all_active_since(mark: datetime.datetime = mark) -> bool:
                seen = [last_activity(name) for name in application_names]
                return all(when is not None and when > mark for when in seen)

            wait_until(all_active_since, "the workers' next poll")


# --- the visitor ---------------------------------------------------------------------------
class FromAddress(HTTPAdapter):
    """Connects from one loopback address, so the proxy sees the visitor as that address."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def ask_for_reset(base_url: str) -> None:
    """Ask for a reset link as a visitor at VISITOR_ADDRESS who forges X-Forwarded-For."""
    forged = {"X-Forwarded-For": FORGED_ADDRESS}
    with requests.Session() as browser:
        browser.mount("https://", FromAddress(VISITOR_ADDRESS))
        page = browser.get(f"{base_url}/signin/trouble?tab=password", headers=forged, timeout=HTTP_TIMEOUT)
        assert page.status_code == 200, describe(page)
        response = browser.post(
            f"{base_url}/signin/trouble/password",
            data={
                "csrf_token": csrf_token(page.text),
                "username": USERNAME,
                "email": EMAIL,
                "request_id": "",
            },
            headers=forged,
            timeout=HTTP_TIMEOUT,
        )
        assert response.status_code == 200, describe(response)


def audited_addresses(instances: list[Process], event: str) -> list[str | None]:
    """The client addresses in the instances' JSON audit lines of ``event``."""
    lines = [json.loads(line) for p in instances for line in p.log().splitlines() if line.startswith("{")]
    return [line.get("ip_address") for line in lines if line.get("event") == event]


def reset_mails(inbox: Inbox) -> list[str]:
    return [str(message["Message-ID"]) for message in inbox.to(EMAIL)]


def test_district_stack_behind_tls_proxy_signs_in_mails_once_and_degrades_without_redis(
    installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = f"idp_stack_{os.getpid()}"
    workdir = tmp_path / "run"  # outside the checkout: nothing found through the source tree
    workdir.mkdir()
    https_port = free_port()
    issuer = f"https://localhost:{https_port}"
    ca = make_root_ca(tmp_path)
    # The test's HTTP client trusts the proxy's CA, and nothing else on this run.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca[0]))

    with ExitStack() as cleanup:
        recreate_postgres_database(database)
        cleanup.callback(drop_postgres_database, database)
        redis_server = RedisServer(tmp_path)
        redis_server.start()
        cleanup.callback(redis_server.stop)
        inbox, smtp_port = cleanup.enter_context(smtp_server())
        processes = Processes(tmp_path, workdir)
        cleanup.callback(processes.stop_all)

        settings = dict(
            IDP_ENV="production",
            IDP_ISSUER=issuer,
            IDP_TRUSTED_PROXIES="1",
            IDP_DATABASE_URL=postgres_url(database),
            IDP_KEYS_DIR=str(tmp_path / "keys"),
            IDP_SECRET_KEY=secrets.token_urlsafe(32),
            IDP_REDIS_URL=redis_server.url,
            IDP_SMTP_URL=f"smtp://127.0.0.1:{smtp_port}",
            IDP_MAIL_FROM="no-reply@district.example",
            IDP_MAIL_POLL_SECONDS=str(POLL_SECONDS),
            IDP_ARGON2_TIME_COST="1",
            IDP_ARGON2_MEMORY_KIB="256",
        )
        env = outside_env(**settings)
        idp = str(installed / "bin" / "idp")
        operator = Operator(workdir, env)
        cleanup.callback(operator.kill_all)
        operator.finish(operator.spawn([idp, "db", "upgrade"]))
        account = [idp, "accounts", "create", "--username", USERNAME, "--email", EMAIL]
        account += ["--password", PASSWORD, "--first-name", "Dana", "--last-name", "Rivera"]
        client = [idp, "clients", "create", "--name", "Lincoln Portal", "--redirect-uri", REDIRECT_URI]
        # The operator's two commands run while the processes start: all of them only need the schema.
        commands = [operator.spawn(account), operator.spawn([*client, "--first-party", "--json"])]

        instance_ports = [free_port(), free_port()]
        instances: list[Process] = []
        for n, port in enumerate(instance_ports):
            gunicorn = [str(installed / "bin" / "python"), "-m", "gunicorn", "idp:create_app()"]
            gunicorn += ["--config", "python:idp.gunicorn_conf", "--bind", f"127.0.0.1:{port}"]
            gunicorn += ["--workers", str(n + 1), "--no-control-socket"]
            instances.append(processes.start(f"gunicorn-{n}", gunicorn, env))
        worker_names = ["idp-stack-worker-0", "idp-stack-worker-1"]
        workers = [
            processes.start(
                name,
                [idp, "worker"],
                env | {"IDP_DATABASE_URL": f"{postgres_url(database)}?application_name={name}"},
            )
            for name in worker_names
        ]
        _, client_output = (operator.finish(command) for command in commands)
        registered = json.loads(client_output)  # stdout holds the JSON and nothing else

        def answering(*urls: str) -> Callable[[], bool]:
            def condition() -> bool:
                assert all(p.alive() for p in processes.started), processes.logs()
                return all(answers(url) for url in urls)

            return condition

        # The proxy starts once the instances are ready (compose: depends_on service_healthy), or
        # its first health check would keep them out of the rotation for a health_interval.
        wait_until(
            answering(*(f"http://127.0.0.1:{port}/readyz" for port in instance_ports)), "the instances"
        )
        proxy_config = tmp_path / "Caddyfile"
        proxy_config.write_text(
            caddyfile(
                admin_port=free_port(),
                http_port=free_port(),
                https_port=https_port,
                ca=ca,
                upstreams=instance_ports,
            )
        )
        caddy_home = tmp_path / "caddy"
        proxy_env = outside_env(
            XDG_DATA_HOME=str(caddy_home / "data"), XDG_CONFIG_HOME=str(caddy_home / "config")
        )
        processes.start(
            "caddy", [CADDY, "run", "--config", str(proxy_config), "--adapter", "caddyfile"], proxy_env
        )
        wait_until(answering(f"{issuer}/healthz"), "the proxy")

        # A parent signs in to the portal through the proxy: authorize, sign-in, code, token.
        district = District(postgres_url(database), tmp_path / "keys", **registered, username=USERNAME)
        auth = AuthRequest(client_id=district.client_id)
        code = obtain_code(issuer, auth, district)
        with requests.Session() as portal:
            answer = redeem(portal, issuer, auth, code, district)
            assert answer.status_code == 200, describe(answer)
            discovery = fetch_json(portal, f"{issuer}/.well-known/openid-configuration")
            jwks = fetch_json(portal, discovery["jwks_uri"])
        assert discovery["issuer"] == issuer and discovery["jwks_uri"].startswith(issuer)
        verify_id_token(
            answer.json()["id_token"], jwks, issuer=issuer, client_id=district.client_id, nonce=auth.nonce
        )
        assert requests.get(f"{issuer}/metrics", timeout=HTTP_TIMEOUT).status_code == 404

        # A recovery mail, with both workers polling: one copy, also after more passes of both.
        ask_for_reset(issuer)
        wait_until(lambda: len(reset_mails(inbox)) >= 1, "the recovery mail")
        wait_for_passes(database, worker_names, PASSES_AFTER_DELIVERY + 1)
        first = reset_mails(inbox)
        assert len(first) == 1, first
        (message,) = inbox.to(EMAIL)
        assert link_in(message, f"{issuer}/reset/")  # the link leads through the proxy
        assert all(worker.alive() for worker in workers), processes.logs()

        # PostgreSQL ends one worker's connections; the next mail still goes out, once.
        assert terminate_application(database, worker_names[0]) >= 1
        ask_for_reset(issuer)
        wait_until(lambda: len(reset_mails(inbox)) >= 2, "the recovery mail after the drop")
        # Both workers use the database again, the one whose connections ended on new ones.
        wait_for_passes(database, worker_names, PASSES_AFTER_DELIVERY + 1)
        both = reset_mails(inbox)
        assert len(both) == 2 and len(set(both)) == 2, both
        assert all(worker.alive() for worker in workers), processes.logs()
        # The instances trust one hop, the proxy, and take the visitor's address from what it added:
        # neither the proxy's own address nor the forged one.
        assert audited_addresses(instances, "password_recovery.requested") == [VISITOR_ADDRESS] * 2

        # Redis stops: the instances go on, on the database's counters, and say so.
        redis_server.stop()
        ready_answer = requests.get(f"{issuer}/readyz", timeout=HTTP_TIMEOUT)
        assert ready_answer.status_code == 200, describe(ready_answer)
        assert ready_answer.json() == {
            "status": "degraded",
            "database": "ok",
            "keys": "ok",
            "redis": "degraded",
        }
        assert requests.get(f"{issuer}/healthz", timeout=HTTP_TIMEOUT).status_code == 200
        assert all(p.alive() for p in processes.started), processes.logs()
