"""A full sign-in against a bare argon2id verify, measured in one run.

The issue's target: a sign-in (POST /signin, answered 303) costs at most 1.20x one
argon2id verify with the same parameters, goal 1.10x; everything but argon2 should be noise.

Run from the repository root::

    .venv/bin/python -m bench.signin_vs_argon2 [--rounds 200] [--warmup 10] [--check]
        [--redis-url memory://]

It builds a throw-away provider (a SQLite database and a keys folder in a temporary
folder, migrated and given one account through the real ``idp`` CLI), serves it with a real
gunicorn (one sync worker), and then takes one sign-in sample and one in-process
``argon2.PasswordHasher.verify`` sample per round, rotating which goes first, so that
machine noise falls on both alike. Each round also times a GET /healthz with the same
client (the "HTTP floor": connection, client library, gunicorn, Flask), which tells the
transport's share of the overhead from the sign-in's own. It prints medians and p90s and
the ratio of the medians. The exit code is 0 (a measurement, not a test) unless ``--check`` is
given and the ratio exceeds the target.

``--redis-url`` is the provider's ``IDP_REDIS_URL`` (``memory://`` unless given): a real Redis
(its keys under a prefix of the run's own, which expire on their own), or a port where nothing
listens, for the database fallback.

``--bare-route`` adds a fourth sample per round: the same POST to a second gunicorn whose only
route verifies the same hash and answers 303 (``bare_route_app``). Its ratio is what gunicorn,
the client and a Flask route cost around argon2: the floor under any sign-in's ratio.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from argon2 import PasswordHasher, Type, extract_parameters

from bench.harness import REPO_ROOT, bin_dir, describe_machine, free_port, gunicorn, load_average
from idp.config import Settings

TARGET_RATIO = 1.20
GOAL_RATIO = 1.10

USERNAME = "bench.parent"
PASSWORD = "correct horse battery staple 42"
SECRET_KEY = "bench-secret-key-0123456789abcdef0123456789abcdef"
REQUEST_TIMEOUT_S = 30.0
CLI_TIMEOUT_S = 120.0
CSRF_FIELD = re.compile(r"""<input\b[^>]*\bname="csrf_token"[^>]*>""")
VALUE_ATTR = re.compile(r"""\bvalue="([^"]*)\"""")


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int
    memory_kib: int
    parallelism: int

    @classmethod
    def defaults(cls) -> Argon2Params:
        """The provider's defaults, read from ``Settings`` so that they cannot drift."""
        settings = Settings()
        return cls(settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism)

    def hasher(self) -> PasswordHasher:
        return PasswordHasher(
            time_cost=self.time_cost,
            memory_cost=self.memory_kib,
            parallelism=self.parallelism,
            type=Type.ID,
        )


@dataclass(frozen=True)
class Summary:
    median_ms: float
    p90_ms: float
    min_ms: float

    @classmethod
    def of(cls, samples_s: list[float]) -> Summary:
        ms = [s * 1000.0 for s in samples_s]
        # quantiles(n=10) returns the nine deciles; the last one is p90.
        p90 = statistics.quantiles(ms, n=10, method="inclusive")[-1]
        return cls(statistics.median(ms), p90, min(ms))


def provider_env(
    workdir: Path, port: int, params: Argon2Params, redis_url: str = "memory://"
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(
        IDP_ENV="development",
        IDP_ISSUER=f"http://127.0.0.1:{port}",
        IDP_DATABASE_URL=f"sqlite:///{workdir / 'idp.db'}",
        IDP_KEYS_DIR=str(workdir / "keys"),
        IDP_REDIS_URL=redis_url,
        IDP_REDIS_KEY_PREFIX=f"idp-bench:{workdir.name}:",
        IDP_SECRET_KEY=SECRET_KEY,
        IDP_SMTP_URL=f"file://{workdir / 'outbox'}",
        IDP_ARGON2_TIME_COST=str(params.time_cost),
        IDP_ARGON2_MEMORY_KIB=str(params.memory_kib),
        IDP_ARGON2_PARALLELISM=str(params.parallelism),
        # Every round signs in once: raise the per-address limit (its check still runs).
        IDP_RATE_LIMIT_SIGNIN="1000000/minute",
    )
    return env


def run_cli(args: list[str], env: Mapping[str, str]) -> None:
    command = [str(bin_dir() / "idp"), *args]
    done = subprocess.run(
        command,
        env=dict(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=CLI_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise RuntimeError(f"`idp {' '.join(args[:2])}` failed ({done.returncode}):\n{done.stderr}")


def prepare_provider(env: Mapping[str, str]) -> None:
    run_cli(["db", "upgrade"], env)
    run_cli(
        [
            "accounts",
            "create",
            "--username",
            USERNAME,
            "--email",
            "bench.parent@example.org",
            "--password",
            PASSWORD,
            "--first-name",
            "Bench",
            "--last-name",
            "Parent",
        ],
        env,
    )


def stored_hash(database: Path) -> str:
    """The hash the CLI stored, so the bare verify checks exactly what the sign-in checks."""
    with sqlite3.connect(database) as conn:
        row = conn.execute("SELECT password_hash FROM account WHERE username = ?", (USERNAME,)).fetchone()
    if row is None:
        raise RuntimeError(f"the account {USERNAME!r} was not created")
    value: str = row[0]
    return value


def bare_route_app() -> Any:
    """A Flask app whose POST /signin only verifies ``BENCH_HASH`` (gunicorn's ``--bare-route`` target)."""
    from flask import Flask, request

    stored = os.environ["BENCH_HASH"]
    hasher = Argon2Params.defaults().hasher()
    app = Flask("bench_bare_route")

    @app.post("/signin")
    def signin() -> tuple[str, int, dict[str, str]]:
        hasher.verify(stored, request.form["password"])
        return "", 303, {"Location": "/account"}

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    return app


def bare_route_sample(base_url: str) -> float:
    body = urlencode({"username": USERNAME, "password": PASSWORD, "csrf_token": "-"})
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, elapsed = timed_request(base_url, "POST", "/signin", body, headers)
    if status != 303:
        raise RuntimeError(f"the bare route answered {status}, not 303")
    return elapsed


def csrf_token(page: str) -> str:
    field = CSRF_FIELD.search(page)
    value = VALUE_ATTR.search(field.group(0)) if field else None
    if value is None:
        raise RuntimeError("no csrf_token field on the sign-in page")
    return value.group(1)


def signin_sample(base_url: str, username: str = USERNAME, password: str = PASSWORD) -> float:
    """One browser's sign-in: the page (not timed), then the POST (timed)."""
    with requests.Session() as browser:
        page = browser.get(f"{base_url}/signin", timeout=REQUEST_TIMEOUT_S)
        page.raise_for_status()
        form = {"username": username, "password": password, "csrf_token": csrf_token(page.text)}
        cookies = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookies}
    status, location, elapsed = timed_request(base_url, "POST", "/signin", urlencode(form), headers)
    if status != 303 or not location.endswith("/account"):
        raise RuntimeError(f"the sign-in answered {status} (Location {location!r}), not 303 to /account")
    return elapsed


def floor_sample(base_url: str) -> float:
    """The same client's fixed cost: a fresh connection's GET /healthz (HTTP, gunicorn, Flask)."""
    status, _, elapsed = timed_request(base_url, "GET", "/healthz", None, {})
    if status != 200:
        raise RuntimeError(f"/healthz answered {status}")
    return elapsed


def timed_request(
    base_url: str, method: str, path: str, body: str | None, headers: dict[str, str]
) -> tuple[int, str, float]:
    """Time one request on a new connection with http.client.

    The timed part uses the standard library's client rather than requests: on a 2-core machine
    requests' own Python (about 3.5 ms a request here) would be counted as the provider's cost.
    """
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port, timeout=REQUEST_TIMEOUT_S
    )
    try:
        started = time.perf_counter()
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    return answer.status, answer.getheader("Location") or "", elapsed


def argon2_sample(hasher: PasswordHasher, hash_: str) -> float:
    started = time.perf_counter()
    hasher.verify(hash_, PASSWORD)
    return time.perf_counter() - started


def interleave(rounds: int, samplers: list[Callable[[], float]]) -> list[list[float]]:
    """One sample of each per round; the starting sampler rotates so none always goes first."""
    samples: list[list[float]] = [[] for _ in samplers]
    for i in range(rounds):
        for j in range(len(samplers)):
            k = (i + j) % len(samplers)
            samples[k].append(samplers[k]())
    return samples


@contextmanager
def bare_route(hash_: str, workdir: Path) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env["BENCH_HASH"] = hash_
    app = "bench.signin_vs_argon2:bare_route_app()"
    with gunicorn(app, env, free_port(), 1, workdir / "bare-route.log") as base_url:
        yield base_url


def measure(rounds: int, warmup: int, with_bare_route: bool = False, redis_url: str = "memory://") -> float:
    params = Argon2Params.defaults()
    hasher = params.hasher()
    workdir = Path(tempfile.mkdtemp(prefix="idp-bench-"))
    try:
        port = free_port()
        env = provider_env(workdir, port, params, redis_url)
        prepare_provider(env)
        hash_ = stored_hash(workdir / "idp.db")
        if hasher.check_needs_rehash(hash_):
            stored = extract_parameters(hash_)
            raise RuntimeError(f"the stored hash uses {stored}, not {params}: every sign-in would rehash")
        print(f"machine: {describe_machine()}; load average {load_average()}")
        print(
            f"argon2id: time_cost={params.time_cost} memory_kib={params.memory_kib} "
            f"parallelism={params.parallelism}; rounds: {rounds} (+{warmup} warm-up); "
            f"IDP_REDIS_URL={redis_url}"
        )
        with ExitStack() as servers:
            base_url = servers.enter_context(
                gunicorn("idp:create_app()", env, port, 1, workdir / "gunicorn.log")
            )
            samplers: list[Callable[[], float]] = [
                lambda: signin_sample(base_url),
                lambda: argon2_sample(hasher, hash_),
                lambda: floor_sample(base_url),
            ]
            if with_bare_route:
                bare_url = servers.enter_context(bare_route(hash_, workdir))
                samplers.append(lambda: bare_route_sample(bare_url))
            interleave(warmup, samplers)
            samples = interleave(rounds, samplers)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    signins, verifies, floors = samples[:3]
    s, v, f = Summary.of(signins), Summary.of(verifies), Summary.of(floors)
    ratio = s.median_ms / v.median_ms
    paired = statistics.median(x / y for x, y in zip(signins, verifies, strict=True))
    print(f"load average after: {load_average()}")
    print(f"{'':16}{'median':>10}{'p90':>10}{'min':>10}")
    print(f"{'sign-in (HTTP)':16}{s.median_ms:>8.2f}ms{s.p90_ms:>8.2f}ms{s.min_ms:>8.2f}ms")
    print(f"{'argon2 verify':16}{v.median_ms:>8.2f}ms{v.p90_ms:>8.2f}ms{v.min_ms:>8.2f}ms")
    print(f"{'HTTP floor':16}{f.median_ms:>8.2f}ms{f.p90_ms:>8.2f}ms{f.min_ms:>8.2f}ms  (GET /healthz)")
    if with_bare_route:
        b = Summary.of(samples[3])
        print(f"{'bare route':16}{b.median_ms:>8.2f}ms{b.p90_ms:>8.2f}ms{b.min_ms:>8.2f}ms  (argon2 only)")
        print(f"bare route/argon2 median ratio: {b.median_ms / v.median_ms:.2f}")
    print(f"overhead (median difference): {s.median_ms - v.median_ms:.2f} ms")
    print(f"median of per-round ratios: {paired:.2f}")
    print(f"signin/argon2 median ratio: {ratio:.2f} (target <= {TARGET_RATIO:.2f}, goal {GOAL_RATIO:.2f})")
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=200, help="measured rounds (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured rounds first (default 10)")
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 when the ratio exceeds {TARGET_RATIO:.2f}"
    )
    parser.add_argument(
        "--bare-route", action="store_true", help="also time argon2 behind a bare Flask route (the floor)"
    )
    parser.add_argument(
        "--redis-url",
        default="memory://",
        help="the provider's IDP_REDIS_URL (default memory://; a port where nothing listens: the database)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 2 or args.warmup < 0:
        parser.error("--rounds must be at least 2 and --warmup at least 0")
    ratio = measure(args.rounds, args.warmup, args.bare_route, args.redis_url)
    if args.check and ratio > TARGET_RATIO:
        print(f"FAIL: ratio {ratio:.2f} exceeds {TARGET_RATIO:.2f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
