"""Token-endpoint code exchanges per second, against a raw-SQL reference, measured in one run.

Targets (issue 8): the provider's ``/token`` exchanges at least 0.6x the reference's rate (goal
0.8x); discovery and JWKS, served as precomputed bytes, at least 0.9x a bare Flask route.

Run from the repository root::

    .venv/bin/python -m bench.token_exchange [--database postgresql|sqlite] [--rounds 5]
        [--exchanges 200] [--concurrency 4] [--workers 2] [--check]

It makes a throw-away district (a database, a keys folder, one parent, one confidential
first-party portal with offline access, all through the real ``idp`` CLI), pre-mints every
authorization code it will redeem straight into ``authorization_code`` (with a PKCE challenge),
and serves, under the same gunicorn settings and the same database:

* the provider, ``idp:create_app()``;
* the reference, ``bench.token_exchange:reference_app()``: a minimal Flask app doing only the
  irreducible work of an exchange in raw SQL: authenticate the client by its hashed secret,
  consume the code with one atomic ``UPDATE … RETURNING``, check redirect URI and PKCE, insert
  the refresh token, commit once, and sign the same two tokens (RS256 ID token and ``at+jwt``
  access token) with the same key;
* a bare Flask route returning fixed bytes, for discovery and JWKS.

Each round redeems a batch on the provider and one on the reference (the order alternates),
from ``--concurrency`` client threads, and reports exchanges per second; the ratio is the median
of the per-round ratios. Exit code 0 (a measurement) unless ``--check`` and a target is missed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import psycopg

from bench.harness import (
    REPO_ROOT,
    bin_dir,
    database,
    describe_machine,
    free_port,
    gunicorn,
    load_average,
)

TARGET_RATIO = 0.6
GOAL_RATIO = 0.8
STATIC_TARGET_RATIO = 0.9

REDIS_URL = os.environ.get("IDP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
USERNAME = "bench.exchange"
PASSWORD = "correct horse battery staple 42"
SECRET_KEY = "bench-secret-key-0123456789abcdef0123456789abcdef"
REDIRECT_URI = "https://portal.example.test/callback"
SCOPE = "openid profile email students offline_access"
VERIFIER = "bench-verifier-" + "v" * 40
REQUEST_TIMEOUT_S = 30.0
CLI_TIMEOUT_S = 120.0
STATIC_REQUESTS = 1000


# --- the reference: only what an exchange cannot do without -------------------------------------
def placeholders(text: str, *, postgres: bool) -> str:
    """Write queries with ``?``; psycopg wants ``%s``."""
    return text.replace("?", "%s") if postgres else text


def reference_app() -> Any:
    """A minimal Flask app redeeming pre-minted codes in raw SQL (gunicorn factory)."""
    from flask import Flask, Response, request
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    env = os.environ
    issuer = env["BENCH_ISSUER"]
    database_url = env["BENCH_DATABASE_URL"]
    keys_dir = Path(env["BENCH_KEYS_DIR"])
    manifest = json.loads((keys_dir / "manifest.json").read_text())
    record = next(k for k in manifest["keys"] if k["alg"] == "RS256" and k["state"] == "active")
    key = RSAKey.import_key((keys_dir / record["file"]).read_bytes(), parameters={"kid": record["kid"]})
    postgres = database_url.startswith("postgresql")
    local = threading.local()

    def sql(text: str) -> str:
        return placeholders(text, postgres=postgres)

    def connection() -> Any:
        conn = getattr(local, "conn", None)
        if conn is None:
            if postgres:
                conn = psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://", 1))
            else:
                conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA busy_timeout=10000")
            local.conn = conn
        return conn

    def fail(error: str, status: int = 400) -> Response:
        return Response(json.dumps({"error": error}), status=status, mimetype="application/json")

    app = Flask("bench_reference")

    @app.post("/token")
    def token() -> Response:
        auth = request.headers.get("Authorization", "")
        try:
            client_id, _, secret = base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
        except ValueError:
            return fail("invalid_client", 401)
        form = request.form
        now = datetime.now(UTC)
        conn = connection()
        if not postgres:
            conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                sql("SELECT secret_hash FROM oauth_client WHERE client_id = ?"), (client_id,)
            ).fetchone()
            if row is None or not hmac.compare_digest(row[0], hashlib.sha256(secret.encode()).hexdigest()):
                conn.rollback()
                return fail("invalid_client", 401)
            code_hash = hashlib.sha256(form.get("code", "").encode()).hexdigest()
            consumed = conn.execute(
                sql(
                    "UPDATE authorization_code SET used_at = ? WHERE code_hash = ? AND client_id = ?"
                    " AND used_at IS NULL AND expires_at > ?"
                    " RETURNING account_id, scope, nonce, auth_time, redirect_uri, code_challenge"
                ),
                (now, code_hash, client_id, now),
            ).fetchone()
            if consumed is None:
                conn.rollback()
                return fail("invalid_grant")
            account_id, scope, nonce, auth_time, redirect_uri, challenge = consumed
            verifier = form.get("code_verifier", "")
            digest = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            )
            if redirect_uri != form.get("redirect_uri") or digest != challenge:
                conn.rollback()
                return fail("invalid_grant")
            refresh_token = "rt_" + secrets.token_urlsafe(32)
            conn.execute(
                sql(
                    "INSERT INTO bench_refresh_token (token_hash, client_id, account_id, scope, expires_at)"
                    " VALUES (?, ?, ?, ?, ?)"
                ),
                (
                    hashlib.sha256(refresh_token.encode()).hexdigest(),
                    client_id,
                    account_id,
                    scope,
                    now + timedelta(days=30),
                ),
            )
            conn.commit()
        except Exception:
            conn.rollback()
            raise
        if isinstance(auth_time, str):
            auth_time = datetime.fromisoformat(auth_time)
        iat = int(now.timestamp())
        access_token = jwt.encode(
            {"alg": "RS256", "kid": record["kid"], "typ": "at+jwt"},
            {
                "iss": issuer,
                "sub": account_id,
                "aud": issuer + "/userinfo",
                "client_id": client_id,
                "scope": scope,
                "iat": iat,
                "exp": iat + 600,
                "jti": secrets.token_urlsafe(16),
            },
            key,
            algorithms=["RS256"],
        )
        at_hash = base64.urlsafe_b64encode(hashlib.sha256(access_token.encode()).digest()[:16]).rstrip(b"=")
        id_token = jwt.encode(
            {"alg": "RS256", "kid": record["kid"], "typ": "JWT"},
            {
                "iss": issuer,
                "sub": account_id,
                "aud": client_id,
                "iat": iat,
                "exp": iat + 600,
                "auth_time": int(auth_time.timestamp()),
                "nonce": nonce,
                "at_hash": at_hash.decode(),
                "amr": ["pwd"],
            },
            key,
            algorithms=["RS256"],
        )
        body = {
            "token_type": "Bearer",
            "access_token": access_token,
            "expires_in": 600,
            "scope": scope,
            "refresh_token": refresh_token,
            "id_token": id_token,
        }
        return Response(json.dumps(body), mimetype="application/json", headers={"Cache-Control": "no-store"})

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b"ok", mimetype="text/plain")

    return app


def bare_app() -> Any:
    """A bare Flask route returning the fixed bytes of the provider's discovery document."""
    from flask import Flask, Response

    body = Path(os.environ["BENCH_FIXED_BODY"]).read_bytes()
    app = Flask("bench_bare")

    @app.get("/fixed")
    def fixed() -> Response:
        return Response(body, mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b"ok", mimetype="text/plain")

    return app


# --- setting the district up ------------------------------------------------------------------
@dataclass(frozen=True)
class District:
    database_url: str
    keys_dir: Path
    client_id: str
    client_secret: str
    account_id: str


def provider_env(database_url: str, keys_dir: Path, issuer: str, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDP_", "BENCH_"))}
    env.update(
        IDP_ENV="development",
        IDP_ISSUER=issuer,
        IDP_DATABASE_URL=database_url,
        IDP_KEYS_DIR=str(keys_dir),
        IDP_REDIS_URL=REDIS_URL,
        IDP_SECRET_KEY=SECRET_KEY,
        IDP_SMTP_URL=f"file://{workdir / 'outbox'}",
        # The limits guard against abuse; the benchmark is not abuse.
        IDP_RATE_LIMIT_TOKEN="10000000/minute",
        IDP_ARGON2_TIME_COST="1",
        IDP_ARGON2_MEMORY_KIB="256",
    )
    return env


def run_cli(args: list[str], env: Mapping[str, str]) -> str:
    done = subprocess.run(
        [str(bin_dir() / "idp"), *args],
        env=dict(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=CLI_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise RuntimeError(f"`idp {' '.join(args[:2])}` failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def raw_connect(database_url: str) -> Any:
    if database_url.startswith("postgresql"):
        return psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://", 1))
    return sqlite3.connect(database_url.removeprefix("sqlite:///"))


def prepare(database_url: str, workdir: Path) -> District:
    keys_dir = workdir / "keys"
    env = provider_env(database_url, keys_dir, "http://127.0.0.1", workdir)
    run_cli(["db", "upgrade"], env)
    run_cli(
        [
            *("accounts", "create", "--username", USERNAME, "--email", "bench@example.org"),
            *("--password", PASSWORD, "--first-name", "Bench", "--last-name", "Exchange"),
        ],
        env,
    )
    output = run_cli(
        [
            *("clients", "create", "--name", "Bench Portal", "--redirect-uri", REDIRECT_URI),
            *("--first-party", "--scope", SCOPE, "--json"),
        ],
        env,
    )
    registered = json.loads(output)
    conn = raw_connect(database_url)
    try:
        (account_id,) = conn.execute("SELECT id FROM account WHERE username = 'bench.exchange'").fetchone()
        conn.execute(
            "CREATE TABLE bench_refresh_token (token_hash VARCHAR(64) PRIMARY KEY, client_id VARCHAR(64),"
            " account_id VARCHAR(32), scope VARCHAR(500), expires_at TIMESTAMP WITH TIME ZONE)"
        )
        conn.commit()
    finally:
        conn.close()
    return District(database_url, keys_dir, registered["client_id"], registered["client_secret"], account_id)


def mint_codes(district: District, count: int) -> list[str]:
    """Insert ``count`` unused codes as /authorize would have left them; return their values."""
    codes = ["ac_" + secrets.token_urlsafe(32) for _ in range(count)]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
    now = datetime.now(UTC)
    postgres = district.database_url.startswith("postgresql")
    rows: list[tuple[Any, ...]] = [
        (
            secrets.token_hex(16),
            hashlib.sha256(code.encode()).hexdigest(),
            district.client_id,
            district.account_id,
            REDIRECT_URI,
            SCOPE,
            secrets.token_urlsafe(12),
            now,
            challenge,
            "S256",
            now,
            now + timedelta(hours=2),
        )
        for code in codes
    ]
    if not postgres:
        rows = [tuple(v.isoformat(sep=" ") if isinstance(v, datetime) else v for v in row) for row in rows]
    conn = raw_connect(district.database_url)
    try:
        sql = placeholders(
            "INSERT INTO authorization_code (id, code_hash, client_id, account_id, redirect_uri, scope,"
            " nonce, auth_time, code_challenge, code_challenge_method, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            postgres=postgres,
        )
        if postgres:
            with conn.cursor() as cursor:
                cursor.executemany(sql, rows)
        else:
            conn.executemany(sql, rows)
        conn.commit()
    finally:
        conn.close()
    return codes


# --- serving and loading ------------------------------------------------------------------------


def request(
    base_url: str, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    """One request on a fresh connection (gunicorn's sync workers close each one anyway)."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def exchange(base_url: str, district: District, code: str) -> None:
    credentials = base64.b64encode(f"{district.client_id}:{district.client_secret}".encode()).decode()
    form = urlencode(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": VERIFIER,
        }
    ).encode()
    status, body = request(
        base_url,
        "POST",
        "/token",
        form,
        {"Authorization": f"Basic {credentials}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    if status != 200:
        raise RuntimeError(f"{base_url}/token answered {status}: {body[:300]!r}")
    tokens = json.loads(body)
    if not (tokens.get("id_token") and tokens.get("access_token") and tokens.get("refresh_token")):
        raise RuntimeError(f"{base_url}/token answered without all three tokens: {sorted(tokens)}")


def rate(concurrency: int, jobs: Sequence[Callable[[], None]]) -> float:
    """Run ``jobs`` from ``concurrency`` threads; return completions per second."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()
    return len(jobs) / (time.perf_counter() - started)


def get_job(base_url: str, path: str) -> Callable[[], None]:
    def job() -> None:
        status, _ = request(base_url, "GET", path)
        if status != 200:
            raise RuntimeError(f"GET {base_url}{path} answered {status}")

    return job


@dataclass(frozen=True)
class Result:
    exchange_ratio: float
    discovery_ratio: float
    jwks_ratio: float


def measure(kind: str, rounds: int, exchanges: int, concurrency: int, workers: int) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="idp-bench-exchange-"))
    try:
        with database(kind, workdir, name="idp_bench") as database_url:
            district = prepare(database_url, workdir)
            # Warm-up batch included: every server redeems (rounds + 1) batches.
            provider_codes = mint_codes(district, (rounds + 1) * exchanges)
            reference_codes = mint_codes(district, (rounds + 1) * exchanges)
            ports = [free_port() for _ in range(3)]
            issuer = f"http://127.0.0.1:{ports[0]}"
            env = provider_env(database_url, district.keys_dir, issuer, workdir)
            reference_env = {
                **env,
                "BENCH_ISSUER": issuer,
                "BENCH_DATABASE_URL": database_url,
                "BENCH_KEYS_DIR": str(district.keys_dir),
            }
            print(f"machine: {describe_machine()}; load average {load_average()}")
            print(
                f"database: {kind}; gunicorn: {workers} sync workers each; client threads: {concurrency}; "
                f"{rounds} rounds of {exchanges} exchanges per server (+1 warm-up round)"
            )
            with (
                gunicorn("idp:create_app()", env, ports[0], workers, workdir / "provider.log") as provider,
                gunicorn(
                    "bench.token_exchange:reference_app()",
                    reference_env,
                    ports[1],
                    workers,
                    workdir / "reference.log",
                ) as reference,
            ):
                provider_rates, reference_rates = [], []
                for i in range(rounds + 1):
                    p_codes = provider_codes[i * exchanges : (i + 1) * exchanges]
                    r_codes = reference_codes[i * exchanges : (i + 1) * exchanges]
                    p_jobs = [partial(exchange, provider, district, c) for c in p_codes]
                    r_jobs = [partial(exchange, reference, district, c) for c in r_codes]
                    if i % 2 == 0:
                        p, r = rate(concurrency, p_jobs), rate(concurrency, r_jobs)
                    else:
                        r, p = rate(concurrency, r_jobs), rate(concurrency, p_jobs)
                    if i > 0:
                        provider_rates.append(p)
                        reference_rates.append(r)
                        print(f"  round {i}: provider {p:7.1f}/s  reference {r:7.1f}/s  ratio {p / r:.2f}")
                discovery_body = request(provider, "GET", "/.well-known/openid-configuration")[1]
                (workdir / "fixed.json").write_bytes(discovery_body)
                bare_env = {**env, "BENCH_FIXED_BODY": str(workdir / "fixed.json")}
                with gunicorn(
                    "bench.token_exchange:bare_app()", bare_env, ports[2], workers, workdir / "bare.log"
                ) as bare:
                    static: dict[str, list[float]] = {"discovery": [], "jwks": [], "bare": []}
                    for i in range(rounds + 1):
                        order = [
                            ("discovery", provider, "/.well-known/openid-configuration"),
                            ("jwks", provider, "/jwks.json"),
                            ("bare", bare, "/fixed"),
                        ]
                        order = order[i % 3 :] + order[: i % 3]
                        for name, base, path in order:
                            value = rate(concurrency, [get_job(base, path)] * STATIC_REQUESTS)
                            if i > 0:
                                static[name].append(value)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    ratios = [p / r for p, r in zip(provider_rates, reference_rates, strict=True)]
    ratio = statistics.median(ratios)
    print(f"load average after: {load_average()}")
    provider_median, reference_median = statistics.median(provider_rates), statistics.median(reference_rates)
    print(f"exchanges/s: provider median {provider_median:.1f}, reference median {reference_median:.1f}")
    print(
        f"provider/reference (median of round ratios): {ratio:.2f} "
        f"(target >= {TARGET_RATIO:.2f}, goal {GOAL_RATIO:.2f})"
    )
    bare_rates = static["bare"]
    result = {}
    for name in ("discovery", "jwks"):
        r = statistics.median(x / y for x, y in zip(static[name], bare_rates, strict=True))
        result[name] = r
        served, bare_median = statistics.median(static[name]), statistics.median(bare_rates)
        print(
            f"{name:9} {served:7.1f} req/s vs bare route {bare_median:7.1f} req/s: "
            f"ratio {r:.2f} (target >= {STATIC_TARGET_RATIO:.2f})"
        )
    return Result(ratio, result["discovery"], result["jwks"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument(
        "--exchanges", type=int, default=200, help="exchanges per server and round (default 200)"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers per server (default 2)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.exchanges < 1 or args.concurrency < 1 or args.workers < 1:
        parser.error("--rounds, --exchanges, --concurrency and --workers must be at least 1")
    result = measure(args.database, args.rounds, args.exchanges, args.concurrency, args.workers)
    missed = (
        result.exchange_ratio < TARGET_RATIO
        or result.discovery_ratio < STATIC_TARGET_RATIO
        or result.jwks_ratio < STATIC_TARGET_RATIO
    )
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
