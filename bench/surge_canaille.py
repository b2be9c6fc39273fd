"""Canaille, the closest Python peer, behind the same proxy for ``bench.surge --canaille``.

Canaille (a Flask and Authlib OpenID Connect provider) is installed into a virtualenv of its own
under /tmp (never into the project's), on first use. It runs as the provider does in the surge:
two gunicorn instances with as many sync workers as the provider's, Caddy in front with TLS,
PostgreSQL in a database of its own (straight: Canaille has no switch to turn psycopg's prepared
statements off, which PgBouncer's transaction mode would need), and **the same password hash**:
argon2id at the provider's cost, through passlib, so that a verify costs the same on both. Its
portal is a trusted client (``client_uri`` in ``TRUSTED_DOMAINS``: no consent page), as the
provider's first-party portal is. Canaille has no registration of parents by Access ID, so its
turns are all sign-ins.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from joserfc.jwk import RSAKey

from bench.harness import database, free_port, stop

VENV = Path(
    os.environ.get("IDP_BENCH_CANAILLE_VENV", Path(tempfile.gettempdir()) / "idp-bench-canaille-venv")
)
REQUIREMENTS = ["canaille[oidc,postgresql]>=0.3,<0.4", "gunicorn", "argon2-cffi", "psycopg[binary]"]
CLIENT_ID = "surge-portal"
START_TIMEOUT_S = 90.0

# Runs inside Canaille's virtualenv: the portal, and parents sharing one hash (copied, not recomputed).
SEED = """
import sys
from canaille import create_app
from canaille.app import models
from canaille.backends import Backend

parents, secret, redirect_uri, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
app = create_app()
with app.app_context():
    Backend.instance.save(models.Client(
        client_id="surge-portal", client_secret=secret, client_name="Surge Portal",
        client_uri="https://portal.localhost", redirect_uris=[redirect_uri],
        grant_types=["authorization_code"], response_types=["code"],
        scope=["openid", "profile", "email"], token_endpoint_auth_method="client_secret_basic",
        id_token_signed_response_alg="RS256",
    ))
    stored = None
    for n in range(parents):
        user = models.User(
            user_name=f"surge.parent.{n}", given_name="Parent", family_name=f"Surge{n}",
            emails=[f"surge.parent.{n}@example.org"],
        )
        user.password = password if stored is None else stored
        Backend.instance.save(user)
        stored = stored or user.password
"""


def ensure_venv() -> Path:
    """Canaille's virtualenv, made and filled on first use."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    done = subprocess.run([str(python), "-c", "import canaille, gunicorn, argon2, psycopg"], check=False)
    if done.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    return VENV / "bin"


def config(*, host: str, database_url: str, cost: Any) -> str:
    """Canaille's config.toml: the provider's argon2 cost, no captcha or lockout, an RSA key."""
    key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8)}, private=True)
    jwk = ", ".join(f"{name} = {json.dumps(value)}" for name, value in key.as_dict(private=True).items())
    return f"""SECRET_KEY = "{secrets.token_hex(32)}"
SERVER_NAME = "{host}"
PREFERRED_URL_SCHEME = "https"
[CANAILLE]
DATABASE = "sql"
CAPTCHA_ENABLED = false
ENABLE_INTRUDER_LOCKOUT = false
[CANAILLE_SQL]
DATABASE_URI = "{database_url}"
PASSWORD_SCHEMES = "argon2"
PASSWORD_HASH_PARAMS = {{ argon2__rounds = {cost.time_cost}, argon2__memory_cost = {cost.memory_kib}, \
argon2__parallelism = {cost.parallelism} }}
POOL_PRE_PING = true
[CANAILLE_OIDC]
REQUIRE_NONCE = false
ACTIVE_JWKS = [{{{jwk}}}]
"""


def wait_answering(url: str, host: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Canaille's gunicorn exited:\n{log_path.read_text()[-3000:]}")
        try:
            request = urllib.request.Request(url, headers={"Host": host})  # noqa: S310
            with urllib.request.urlopen(request, timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"Canaille did not answer {url} within {START_TIMEOUT_S:.0f} s")


@contextmanager
def canaille_gunicorn(
    bin_dir: Path, env: dict[str, str], port: int, workers: int, host: str, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    command = [
        str(bin_dir / "gunicorn"),
        "canaille:create_app()",
        *("--workers", str(workers), "--bind", f"127.0.0.1:{port}", "--no-control-socket"),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        wait_answering(f"http://127.0.0.1:{port}/.well-known/openid-configuration", host, process, log_path)
        yield process
    finally:
        stop(process)


@contextmanager
def canaille_stack(
    workdir: Path,
    *,
    parents: int,
    workers: int,
    cost: Any,
    password: str,
    redirect_uri: str,
    wrong_share: float,
) -> Iterator[tuple[dict[str, Any], dict[str, list[int]], str]]:
    """Yield the load's plan, the processes to count and the database's name."""
    from bench.surge import caddy, pids_named  # the same proxy as the provider's

    bin_dir = ensure_venv()
    folder = workdir / "canaille"
    folder.mkdir()
    with ExitStack() as stack:
        url = stack.enter_context(database("postgresql", folder, name="idp_surge_canaille"))
        https_port = free_port()
        host = f"localhost:{https_port}"
        config_path = folder / "config.toml"
        config_path.write_text(config(host=host, database_url=url, cost=cost))
        env = {**os.environ, "CANAILLE_CONFIG": str(config_path)}
        secret = secrets.token_urlsafe(24)
        subprocess.run(
            [str(bin_dir / "python"), "-c", SEED, str(parents), secret, redirect_uri, password],
            env=env,
            check=True,
            capture_output=True,
        )
        ports = [free_port(), free_port()]
        roots: dict[str, list[int]] = {"gunicorn": []}
        for n, port in enumerate(ports):
            stack.enter_context(
                canaille_gunicorn(bin_dir, env, port, workers, host, folder / f"gunicorn-{n}.log")
            )
            roots["gunicorn"].extend(pids_named(f"127.0.0.1:{port}"))
        proxy = stack.enter_context(
            caddy(folder, https_port, ports, ready_path="/.well-known/openid-configuration")
        )
        roots["caddy"] = [proxy.pid]
        plan = {
            "peer": "canaille",
            "issuer": f"https://{host}",
            "client_id": CLIENT_ID,
            "client_secret": secret,
            "redirect_uri": redirect_uri,
            "scope": "openid profile email",
            "password": password,
            "usernames": [f"surge.parent.{n}" for n in range(parents)],
            "wrong_password_share": wrong_share,
            "register_share": 0.0,
            "access_password": "",
            "registrations": [],
        }
        yield plan, roots, url.rsplit("/", 1)[1]
