"""The CPU of one whole flow in one gunicorn worker, argon2 aside: what ``bench.surge`` adds to
``bench.inprocess --profile flow`` by serving the flow over HTTP.

One gunicorn instance of the provider with one sync worker, straight to PostgreSQL (no proxy, no
pooler), argon2 at its cheapest (t=1, 8 KiB); flows made one after another by a plain HTTP
client, as ``bench.surge_load`` makes them. Prints the worker's CPU per flow (``psutil``) and the
wall time per flow, with and without the image's gunicorn settings (``idp.gunicorn_conf``: JSON
request logs, metrics across workers)::

    .venv/bin/python -m bench.surge_worker [--flows 200]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psutil  # type: ignore[import-untyped]  # Locust's dependency
import requests

from bench.harness import database, free_port, gunicorn, load_average
from bench.surge import PASSWORD, REDIRECT_URI, SCOPE, Argon2Cost, prepare, provider_env
from tests.redis_server import RedisServer

CHEAPEST = Argon2Cost(time_cost=1, memory_kib=8, parallelism=1)
CSRF_FIELD = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def one_flow(issuer: str, client_id: str, secret: str, username: str) -> None:
    browser = requests.Session()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    asked = browser.get(
        f"{issuer}/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": SCOPE,
            "state": secrets.token_urlsafe(8),
            "nonce": secrets.token_urlsafe(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
    )
    request_id = parse_qs(urlsplit(asked.headers["Location"]).query)["request"][0]
    page = browser.get(f"{issuer}/signin", params={"request": request_id})
    match = CSRF_FIELD.search(page.text)
    assert match is not None, page.status_code
    form = {
        "csrf_token": match.group(1),
        "username": username,
        "password": PASSWORD,
        "request_id": request_id,
    }
    signed_in = browser.post(f"{issuer}/signin", data=form, allow_redirects=False)
    assert signed_in.status_code == 303, signed_in.status_code
    issued = browser.get(issuer + urlsplit(signed_in.headers["Location"]).path, allow_redirects=False)
    code = parse_qs(urlsplit(issued.headers["Location"]).query)["code"][0]
    tokens = browser.post(
        f"{issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=(client_id, secret),
    )
    claims = browser.get(
        f"{issuer}/userinfo", headers={"Authorization": f"Bearer {tokens.json()['access_token']}"}
    )
    assert claims.status_code == 200, claims.status_code


def measure(config: str | None, flows: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="idp-surge-worker-"))
    redis = RedisServer(workdir)
    redis.start()
    try:
        with database("postgresql", workdir, name="idp_surge_worker") as url:
            port = free_port()
            issuer = f"http://127.0.0.1:{port}"
            env = provider_env(
                issuer=issuer, database_url=url, redis_url=redis.url, workdir=workdir, cost=CHEAPEST
            )
            env["IDP_TRUSTED_PROXIES"] = "0"  # no proxy in front here
            district, client_id, secret = prepare(env, 50, 0, url, CHEAPEST)
            with gunicorn("idp:create_app()", env, port, 1, workdir / "gunicorn.log", config=config):
                # The worker has its master's command line: the master is the one with a child.
                (worker,) = (
                    child
                    for p in psutil.process_iter(["cmdline"])
                    if any(f"127.0.0.1:{port}" in part for part in p.info["cmdline"] or ())
                    for child in p.children()
                )
                for n in range(20):
                    one_flow(issuer, client_id, secret, district.usernames[n % 50])
                before, started = worker.cpu_times(), time.perf_counter()
                for n in range(flows):
                    one_flow(issuer, client_id, secret, district.usernames[n % 50])
                after, wall = worker.cpu_times(), time.perf_counter() - started
        cpu = (after.user + after.system - before.user - before.system) * 1000 / flows
        print(
            f"gunicorn {'--config ' + config if config else 'without --config'}: "
            f"worker CPU {cpu:.1f} ms per flow, wall {wall * 1000 / flows:.1f} ms; load {load_average()}"
        )
    finally:
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--flows", type=int, default=200)
    args = parser.parse_args(argv)
    for config in (None, "python:idp.gunicorn_conf"):
        measure(config, args.flows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
