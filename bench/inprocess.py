"""CPU time of a sign-in and of a code exchange inside one process, with the Flask test client.

What the gunicorn benchmarks (``bench.signin_vs_argon2``, ``bench.token_exchange``) cannot
separate on a shared machine: the provider's own cost per request, in CPU time of this process
(``time.process_time``), which neighbours barely move. argon2 is set to its cheapest (t=1,
8 KiB) so that a sign-in's figure is everything but argon2. The database and Redis servers'
own CPU is not counted; the round trips to them are (client-side driver and ORM work).

Run from the repository root (PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379)::

    .venv/bin/python -m bench.inprocess [--database sqlite|postgresql] [--signins 300]
        [--exchanges 300] [--profile signin|token|flow] [--students 0]

``--profile`` prints a cProfile of that path instead (cumulative time, top 40). ``--profile flow``
runs whole flows as a portal and its parent's browser make them (authorize, the sign-in page and
POST, the continued authorization, the code exchange, userinfo) and first prints, per step, the
CPU time and the SQL statements sent; ``--flows`` sets how many (default 200).
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import hashlib
import os
import pstats
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, insert

from bench.harness import database
from idp import create_app
from idp.config import Settings
from idp.extensions import db
from idp.oauth.clients import ClientService, ClientSpec
from idp.oauth.models import AuthorizationCode
from idp.web.context import services

REDIS_URL = os.environ.get("IDP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
USERNAME = "bench.inprocess"
PASSWORD = "correct horse battery staple 42"
REDIRECT_URI = "https://portal.example.test/callback"
SCOPE = "openid profile email students offline_access"
VERIFIER = "bench-verifier-" + "v" * 40
CSRF_FIELD = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


class Provider:
    """A throw-away provider: one parent (optionally with students) and one first-party portal."""

    def __init__(self, database_url: str, workdir: Path, students: int, redis_url: str = REDIS_URL) -> None:
        settings = Settings(
            env="development",
            issuer="http://localhost",
            database_url=database_url,
            redis_url=redis_url,
            redis_key_prefix=f"idp-inprocess:{secrets.token_hex(6)}:",
            secret_key="bench-secret-key-0123456789abcdef0123456789abcdef",
            keys_dir=workdir / "keys",
            smtp_url=f"file://{workdir / 'outbox'}",
            argon2_time_cost=1,
            argon2_memory_kib=8,
            rate_limit_signin="100000000/minute",
            rate_limit_token="100000000/minute",
        )
        self.app: Flask = create_app(settings)
        with self.app.app_context():
            from flask_migrate import upgrade

            upgrade()
            rt = services()
            account = rt.accounts().create(
                username=USERNAME,
                email="bench@example.org",
                password=PASSWORD,
                first_name="Bench",
                last_name="Parent",
            )
            for n in range(students):
                student = rt.guardianship().create_student(
                    sis_id=f"S{n}",
                    first_name=f"Kid{n}",
                    last_name="Student",
                    school_code="LES",
                    access_id=f"ACCESS-{n}",
                    access_password=f"pass-{n}",
                )
                rt.guardianship().link(account, student, relationship="Mother")
            registered = ClientService(db.session).create(
                ClientSpec(name="Bench Portal", redirect_uris=[REDIRECT_URI], first_party=True, scope=SCOPE)
            )
            db.session.commit()
            self.account_id = account.id
            self.client_id = registered.client.client_id
            assert registered.client_secret is not None
            self.client_secret = registered.client_secret

    def mint_codes(self, count: int) -> list[str]:
        """Insert unused codes as /authorize leaves them; return their values."""
        codes = [f"ac_{secrets.token_urlsafe(32)}" for _ in range(count)]
        challenge = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
        now = datetime.now(UTC)
        rows = [
            {
                "id": secrets.token_hex(16),
                "code_hash": hashlib.sha256(code.encode()).hexdigest(),
                "client_id": self.client_id,
                "account_id": self.account_id,
                "redirect_uri": REDIRECT_URI,
                "scope": SCOPE,
                "nonce": secrets.token_urlsafe(12),
                "auth_time": now,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "created_at": now,
                "expires_at": now + timedelta(hours=2),
                "used_at": None,
                "sid": None,
            }
            for code in codes
        ]
        with self.app.app_context():
            db.session.execute(insert(AuthorizationCode.__table__), rows)  # type: ignore[arg-type]
            db.session.commit()
        return codes

    def reference(self, database_url: str, workdir: Path) -> Flask:
        """``bench.token_exchange``'s raw-SQL reference app, on the same database and keys."""
        from bench.token_exchange import raw_connect, reference_app

        conn = raw_connect(database_url)
        try:
            conn.execute(
                "CREATE TABLE bench_refresh_token (token_hash VARCHAR(64) PRIMARY KEY, client_id VARCHAR(64),"
                " account_id VARCHAR(32), scope VARCHAR(500), expires_at TIMESTAMP WITH TIME ZONE)"
            )
            conn.commit()
        finally:
            conn.close()
        os.environ.update(
            BENCH_ISSUER="http://localhost",
            BENCH_DATABASE_URL=database_url,
            BENCH_KEYS_DIR=str(workdir / "keys"),
        )
        app: Flask = reference_app()
        return app

    def signin(self, browser: FlaskClient, timer: Callable[[], float]) -> float:
        """A fresh browser's sign-in: the page (not counted), then the POST (counted)."""
        page = browser.get("/signin")
        match = CSRF_FIELD.search(page.get_data(as_text=True))
        if match is None:
            raise RuntimeError("no csrf_token on the sign-in page")
        form = {"csrf_token": match.group(1), "username": USERNAME, "password": PASSWORD, "request_id": ""}
        started = timer()
        answer = browser.post("/signin", data=form)
        elapsed = timer() - started
        if answer.status_code != 303:
            raise RuntimeError(f"the sign-in answered {answer.status_code}, not 303")
        return elapsed

    def exchange(self, browser: FlaskClient, code: str, timer: Callable[[], float]) -> float:
        credentials = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        body = urlencode(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": VERIFIER,
            }
        )
        headers = {"Authorization": f"Basic {credentials}"}
        started = timer()
        answer = browser.post(
            "/token", data=body, headers=headers, content_type="application/x-www-form-urlencoded"
        )
        elapsed = timer() - started
        tokens = answer.get_json(silent=True) or {}
        if answer.status_code != 200 or not tokens.get("refresh_token") or not tokens.get("id_token"):
            raise RuntimeError(f"/token answered {answer.status_code}: {answer.get_data()[:300]!r}")
        return elapsed


FLOW_STEPS = (
    "GET /authorize",
    "GET /signin",
    "POST /signin",
    "GET /authorize/continue",
    "POST /token",
    "GET /userinfo",
)


class StatementCounter:
    """The SQL statements the app's engine sends (every connection), by verb."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, _conn: object, _cursor: object, statement: str, *_: object) -> None:
        self.sent.append(statement.split(None, 1)[0].upper())

    def take(self) -> list[str]:
        sent, self.sent = self.sent, []
        return sent


def location_query(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def one_flow(
    provider: Provider, timer: Callable[[], float], counter: StatementCounter | None = None
) -> dict[str, tuple[float, list[str]]]:
    """A parent's whole flow in a fresh browser; return each step's time and statements."""
    browser = provider.app.test_client()
    steps: dict[str, tuple[float, list[str]]] = {}

    def step(name: str, send: Callable[[], object]) -> object:
        if counter is not None:
            counter.take()
        started = timer()
        answer = send()
        steps[name] = (timer() - started, counter.take() if counter is not None else [])
        return answer

    challenge = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile email students",
            "state": secrets.token_urlsafe(12),
            "nonce": secrets.token_urlsafe(12),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    answer: Any = step(FLOW_STEPS[0], lambda: browser.get(f"/authorize?{query}"))
    request_id = location_query(answer.headers["Location"])["request"]
    page: Any = step(FLOW_STEPS[1], lambda: browser.get(f"/signin?request={request_id}"))
    match = CSRF_FIELD.search(page.get_data(as_text=True))
    if match is None:
        raise RuntimeError("no csrf_token on the sign-in page")
    form = {
        "csrf_token": match.group(1),
        "username": USERNAME,
        "password": PASSWORD,
        "request_id": request_id,
    }
    answer = step(FLOW_STEPS[2], lambda: browser.post("/signin", data=form))
    if answer.status_code != 303:
        raise RuntimeError(f"the sign-in answered {answer.status_code}, not 303")
    continued = urlsplit(answer.headers["Location"]).path
    answer = step(FLOW_STEPS[3], lambda: browser.get(continued))
    code = location_query(answer.headers["Location"])["code"]
    credentials = base64.b64encode(f"{provider.client_id}:{provider.client_secret}".encode()).decode()
    body = urlencode(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": VERIFIER,
        }
    )
    answer = step(
        FLOW_STEPS[4],
        lambda: browser.post(
            "/token",
            data=body,
            headers={"Authorization": f"Basic {credentials}"},
            content_type="application/x-www-form-urlencoded",
        ),
    )
    access_token = answer.get_json()["access_token"]
    answer = step(
        FLOW_STEPS[5], lambda: browser.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})
    )
    if answer.status_code != 200:
        raise RuntimeError(f"/userinfo answered {answer.status_code}")
    return steps


def argon2_verify_ms(settings: Settings, rounds: int = 20) -> float:
    """CPU of one verify at the provider's default argon2 cost (the flow runs at the cheapest)."""
    from argon2 import PasswordHasher

    hasher = PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )
    hashed = hasher.hash(PASSWORD)
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        hasher.verify(hashed, PASSWORD)
        samples.append(time.process_time() - started)
    return statistics.median(samples) * 1000


def profile_flows(provider: Provider, flows: int, top: int) -> None:
    """Print each step's CPU and statements, then a cProfile of ``flows`` whole flows."""
    counter = StatementCounter()
    with provider.app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", counter)
    try:
        for _ in range(20):
            one_flow(provider, time.process_time)
        runs = [one_flow(provider, time.process_time, counter) for _ in range(flows)]
    finally:
        event.remove(engine, "before_cursor_execute", counter)
    total = 0.0
    print(f"{'step':26} {'CPU median ms':>13} {'mean ms':>8}  statements (BEGIN/COMMIT/ROLLBACK included)")
    for name in FLOW_STEPS:
        cpu = [run[name][0] * 1000 for run in runs]
        total += statistics.fmean(cpu)
        sent = runs[-1][name][1]
        median, mean = statistics.median(cpu), statistics.fmean(cpu)
        print(f"{name:26} {median:13.2f} {mean:8.2f}  {len(sent):2d} {' '.join(sent)}")
    print(f"{'whole flow':26} {'':13} {total:8.2f}  (argon2 at t=1, 8 KiB: next to nothing)")
    print(f"one argon2 verify at the default cost: {argon2_verify_ms(Settings()):.2f} ms CPU")
    if not top:
        return
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(flows):
        one_flow(provider, time.process_time)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top // 2)


def cpu_ms(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    return f"median {statistics.median(ms):6.2f} ms  mean {statistics.fmean(ms):6.2f} ms  min {ms[0]:6.2f} ms"


def run(
    kind: str,
    signins: int,
    exchanges: int,
    students: int,
    profile: str | None,
    redis_url: str,
    flows: int = 200,
    top: int = 60,
) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="idp-inprocess-"))
    try:
        with database(kind, workdir, name="idp_inprocess") as database_url:
            provider = Provider(database_url, workdir, students, redis_url)
            browser = provider.app.test_client()
            codes = provider.mint_codes(exchanges + 50)
            print(
                f"database: {kind}; redis: {redis_url}; students linked: {students}; "
                f"load {os.getloadavg()[0]:.2f}"
            )
            if profile == "flow":
                profile_flows(provider, flows, top)
                return
            for _ in range(30):
                provider.signin(provider.app.test_client(), time.process_time)
            for code in codes[:50]:
                provider.exchange(browser, code, time.process_time)
            if profile is not None:
                profiler = cProfile.Profile()
                profiler.enable()
                if profile == "signin":
                    for _ in range(signins):
                        provider.signin(provider.app.test_client(), time.process_time)
                else:
                    for code in codes[50:]:
                        provider.exchange(browser, code, time.process_time)
                profiler.disable()
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
                return
            reference = provider.reference(database_url, workdir)
            reference_browser = reference.test_client()
            reference_codes = provider.mint_codes(exchanges + 50)
            for code in reference_codes[:50]:
                provider.exchange(reference_browser, code, time.process_time)
            sign_cpu = [
                provider.signin(provider.app.test_client(), time.process_time) for _ in range(signins)
            ]
            token_cpu, reference_cpu = [], []
            for code, other in zip(codes[50:], reference_codes[50:], strict=True):
                token_cpu.append(provider.exchange(browser, code, time.process_time))
                reference_cpu.append(provider.exchange(reference_browser, other, time.process_time))
            sign_wall = [provider.signin(provider.app.test_client(), time.perf_counter) for _ in range(100)]
            fresh = provider.mint_codes(100)
            token_wall = [provider.exchange(browser, code, time.perf_counter) for code in fresh]
            print(f"sign-in POST  CPU:  {cpu_ms(sign_cpu)}   (n={signins})")
            print(f"sign-in POST  wall: {cpu_ms(sign_wall)}   (n=100)")
            print(f"/token code   CPU:  {cpu_ms(token_cpu)}   (n={exchanges})")
            print(f"/token code   wall: {cpu_ms(token_wall)}   (n=100)")
            print(f"reference     CPU:  {cpu_ms(reference_cpu)}   (n={exchanges})")
            ratio = statistics.median(reference_cpu) / statistics.median(token_cpu)
            print(f"exchange CPU ratio (reference / provider, medians): {ratio:.2f}")
            with provider.app.app_context():
                db.session.remove()
                db.engine.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--signins", type=int, default=300)
    parser.add_argument("--exchanges", type=int, default=300)
    parser.add_argument("--students", type=int, default=0, help="students linked to the parent (default 0)")
    parser.add_argument("--profile", choices=("signin", "token", "flow"))
    parser.add_argument("--flows", type=int, default=200, help="whole flows profiled by --profile flow")
    parser.add_argument("--top", type=int, default=60, help="cProfile lines after the flow's steps (0: none)")
    parser.add_argument(
        "--redis-url",
        default=REDIS_URL,
        help="memory:// as bench.signin_vs_argon2 runs (default: real Redis)",
    )
    args = parser.parse_args(argv)
    run(
        args.database,
        args.signins,
        args.exchanges,
        args.students,
        args.profile,
        args.redis_url,
        args.flows,
        args.top,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
