"""What every benchmark here shares: the virtualenv, free ports, a gunicorn it always stops, the machine."""

from __future__ import annotations

import http.client
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 60.0


def bin_dir() -> Path:
    """The virtualenv's scripts: beside the interpreter running this module."""
    here = Path(sys.executable).parent
    if (here / "idp").exists() and (here / "gunicorn").exists():
        return here
    return REPO_ROOT / ".venv" / "bin"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def gunicorn(
    app: str, env: Mapping[str, str], port: int, workers: int, log_path: Path, config: str | None = None
) -> Iterator[str]:
    """Serve ``app`` until the block ends; always stop it on the way out. ``config``: gunicorn's
    ``--config`` (``python:idp.gunicorn_conf`` runs it as the image does)."""
    base_url = f"http://127.0.0.1:{port}"
    command = [
        str(bin_dir() / "gunicorn"),
        app,
        *(("--config", config) if config else ()),
        *("--workers", str(workers), "--bind", f"127.0.0.1:{port}"),
        # Several gunicorns may run at once: none may take the shared default control socket.
        "--no-control-socket",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=dict(env), cwd=REPO_ROOT, stdout=log, stderr=log)
        try:
            wait_healthy(base_url, process, log_path)
            yield base_url
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process``: SIGTERM, then SIGKILL if it is still there after 15 s."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


def wait_healthy(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    parts = urlsplit(base_url)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{log_path.read_text()}")
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=1)
        try:
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.1)
    raise RuntimeError(
        f"gunicorn did not answer /healthz within {STARTUP_TIMEOUT_S:.0f} s:\n{log_path.read_text()}"
    )


def describe_machine() -> str:
    # As `nproc` counts: the CPUs this process may run on.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpus} CPUs, Python {platform.python_version()} ({platform.system()} {platform.machine()})"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


POSTGRES_ADMIN_URL = os.environ.get("IDP_BENCH_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def database(kind: str, workdir: Path, *, name: str) -> Iterator[str]:
    """A throw-away database: SQLite in ``workdir``, or PostgreSQL ``<name>_<pid>``, dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'idp.db'}"
        return
    name = f"{name}_{os.getpid()}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        server = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
