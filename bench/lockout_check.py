"""The lockout check against the real Redis, alone and as a share of a full sign-in, in one run.

The issue's target: what the lockout adds to a sign-in stays under 2% of it.

Run from the repository root (Redis on 127.0.0.1:6379, or ``--redis-url``; a port where nothing
listens measures the database fallback)::

    .venv/bin/python -m bench.lockout_check [--checks 10000] [--signins 200] [--check]

It builds a throw-away provider in-process (a SQLite database and keys in a temporary
folder, one account, argon2id with the provider's default parameters, counters under a
key prefix of its own that is deleted afterwards) and measures, interleaved so that machine
noise falls on both alike:

- the lockout work of one sign-in, as the service does it: read the lock, count the
  attempt (the Lua script), reset on success: three Redis round trips and the database read of
  the lock Redis may have lost (and the read alone); without Redis, three database statements;
- a full sign-in: POST /signin through the Flask test client (CSRF, form, lockout, argon2,
  session row, 303), each from a fresh browser.

It prints medians and 99th percentiles and the share of the medians. The exit code is 0 (a
measurement, not a test) unless ``--check`` is given and the share exceeds the target.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from flask import Flask

from idp import create_app
from idp.accounts.lockout import Lockout
from idp.config import Settings
from idp.extensions import db
from idp.web.context import SERVICES_KEY

TARGET_SHARE = 0.02
USERNAME = "bench.parent"
PASSWORD = "correct horse battery staple 42"
CSRF_FIELD = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


@dataclass(frozen=True)
class Summary:
    median_ms: float
    p99_ms: float

    @classmethod
    def of(cls, samples_s: list[float]) -> Summary:
        ms = [s * 1000.0 for s in samples_s]
        return cls(statistics.median(ms), statistics.quantiles(ms, n=100, method="inclusive")[98])


def build_provider(workdir: Path, redis_url: str, prefix: str) -> Flask:
    settings = Settings(
        env="development",
        issuer="http://localhost",
        database_url=f"sqlite:///{workdir / 'idp.db'}",
        redis_url=redis_url,
        redis_key_prefix=prefix,
        secret_key="bench-secret-key-0123456789abcdef0123456789abcdef",
        keys_dir=workdir / "keys",
        rate_limit_signin="1000000/minute",  # the benchmark is one address signing in many times
    )
    app = create_app(settings)
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
        app.extensions[SERVICES_KEY].accounts().create(
            username=USERNAME,
            email="bench.parent@example.org",
            password=PASSWORD,
            first_name="Bench",
            last_name="Parent",
        )
        db.session.commit()
    return app


def lockout_of(app: Flask) -> Lockout:
    lockout: Lockout = app.extensions[SERVICES_KEY].lockout
    return lockout


def lockout_sample(lockout: Lockout, key: str) -> float:
    """One sign-in's lockout work for a right password: read the lock, count, reset."""
    started = time.perf_counter()
    lockout.check(key)
    attempt = lockout.begin(key)
    lockout.succeeded(attempt)
    return time.perf_counter() - started


def read_sample(lockout: Lockout, key: str) -> float:
    started = time.perf_counter()
    lockout.check(key)
    return time.perf_counter() - started


def signin_sample(app: Flask) -> float:
    """A fresh browser's sign-in: the page (not timed), then the POST (timed)."""
    browser = app.test_client()
    page = browser.get("/signin")
    match = CSRF_FIELD.search(page.get_data(as_text=True))
    if match is None:
        raise RuntimeError("no csrf_token on the sign-in page")
    form = {"csrf_token": match.group(1), "username": USERNAME, "password": PASSWORD, "request_id": ""}
    started = time.perf_counter()
    answer = browser.post("/signin", data=form)
    elapsed = time.perf_counter() - started
    if answer.status_code != 303:
        raise RuntimeError(f"the sign-in answered {answer.status_code}, not 303")
    return elapsed


def describe_machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpus} CPUs, Python {platform.python_version()} ({platform.system()} {platform.machine()})"


def describe_redis(client: redis.Redis, redis_url: str) -> str:
    try:
        return f"{client.info('server').get('redis_version')} at {redis_url}"
    except redis.RedisError:
        return f"nothing answers at {redis_url}: the counters are the database's (the fallback)"


def forget_keys(client: redis.Redis, prefix: str) -> None:
    try:
        for stale in client.scan_iter(match=f"{prefix}*"):
            client.delete(stale)
    except redis.RedisError:
        pass  # no Redis, no keys


def measure(redis_url: str, checks: int, signins: int) -> float:
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    redis_version = describe_redis(client, redis_url)
    prefix = f"idp-bench:{secrets.token_hex(6)}:"
    workdir = Path(tempfile.mkdtemp(prefix="idp-bench-lockout-"))
    try:
        app = build_provider(workdir, redis_url, prefix)
        lockout = lockout_of(app)
        key = lockout.user_key(USERNAME)
        settings = app.extensions[SERVICES_KEY].settings
        print(f"machine: {describe_machine()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"redis: {redis_version}")
        print(
            f"argon2id: time_cost={settings.argon2_time_cost} memory_kib={settings.argon2_memory_kib} "
            f"parallelism={settings.argon2_parallelism}; {checks} lockout checks, {signins} sign-ins"
        )
        for _ in range(3):
            signin_sample(app)
            with app.app_context():  # as a request has: the database counters take its session
                lockout_sample(lockout, key)
        per_round = max(1, checks // signins)
        full: list[float] = []
        work: list[float] = []
        reads: list[float] = []
        while len(work) < checks or len(full) < signins:
            if len(full) < signins:
                full.append(signin_sample(app))
            with app.app_context():
                for _ in range(min(per_round, checks - len(work))):
                    work.append(lockout_sample(lockout, key))
                    reads.append(read_sample(lockout, key))
                if lockout.counters.window(key).count != 0:
                    raise RuntimeError("the counter did not reset: the benchmark measured something else")
    finally:
        forget_keys(client, prefix)
        client.close()
        shutil.rmtree(workdir, ignore_errors=True)

    w, r, f = Summary.of(work), Summary.of(reads), Summary.of(full)
    share = w.median_ms / f.median_ms
    print(f"{'':34}{'median':>10}{'p99':>10}")
    print(
        f"{'lockout work of one sign-in':34}{w.median_ms:>8.3f}ms{w.p99_ms:>8.3f}ms  (read + count + reset)"
    )
    print(f"{'lock read alone':34}{r.median_ms:>8.3f}ms{r.p99_ms:>8.3f}ms")
    print(f"{'full sign-in (POST /signin)':34}{f.median_ms:>8.3f}ms{f.p99_ms:>8.3f}ms")
    print(f"lockout share of a sign-in (medians): {share * 100:.2f}% (target < {TARGET_SHARE * 100:.0f}%)")
    return share


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--redis-url", default=os.environ.get("IDP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    )
    parser.add_argument("--checks", type=int, default=10_000, help="lockout checks (default 10000)")
    parser.add_argument("--signins", type=int, default=200, help="full sign-ins (default 200)")
    parser.add_argument("--check", action="store_true", help="exit 1 when the share exceeds the target")
    args = parser.parse_args(argv)
    if args.checks < 100 or args.signins < 2:
        parser.error("--checks must be at least 100 and --signins at least 2")
    share = measure(args.redis_url, args.checks, args.signins)
    if args.check and share > TARGET_SHARE:
        print(f"FAIL: share {share * 100:.2f}% exceeds {TARGET_SHARE * 100:.0f}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
