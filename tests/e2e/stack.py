"""Pieces of the end-to-end deployment tests: processes started in sessions of their own, Caddy as
the TLS proxy with a root CA the test makes, and polling until a condition holds.

Shared by tests/e2e/test_deployment_stack.py (the wheel, as a district installs it) and
tests/e2e/test_multi_instance.py (two instances, PgBouncer, Redis with Sentinel).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.tls import certificate_pem, new_root_ca, private_pem

ROOT = Path(__file__).resolve().parents[2]
CADDY = shutil.which("caddy") or "/usr/bin/caddy"
SHIPPED_CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"
# Bounds for a broken build only: every wait ends as soon as its condition holds.
WAIT = 30.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def answers(url: str) -> bool:
    try:
        response = requests.get(url, timeout=2)
    except requests.RequestException:
        return False
    with response:
        return response.status_code == 200


# --- the proxy's CA and configuration -----------------------------------------------------
def make_root_ca(folder: Path) -> tuple[Path, Path]:
    """A root CA for Caddy's ``pki`` block (as deploy/docker/local-ca.sh makes one); return the
    certificate (which the test's HTTP client trusts) and the key."""
    key, certificate = new_root_ca("School IdP test root CA")
    cert_path, key_path = folder / "root.crt", folder / "root.key"
    cert_path.write_bytes(certificate_pem(certificate))
    key_path.write_bytes(private_pem(key))
    key_path.chmod(0o600)
    return cert_path, key_path


def caddyfile(
    *,
    admin_port: int,
    http_port: int,
    https_port: int,
    ca: tuple[Path, Path],
    upstreams: list[int],
    pinned: Mapping[int, int] | None = None,
) -> str:
    """The shipped Caddyfile's provider site with the test's ports, CA and instances (no portal).

    ``pinned`` adds a site per entry, https port → one upstream, so that a test can reach a
    chosen instance over the same TLS and the same host name (cookies are scoped by host, not
    port, so a browser's cookies go to every site).
    """
    shipped = SHIPPED_CADDYFILE.read_text()
    # The directives this copies must still be the shipped ones.
    for directive in ("tls internal", "respond /metrics 404", "lb_policy round_robin", "health_uri /readyz"):
        assert directive in shipped, f"deploy/caddy/Caddyfile no longer says {directive!r}"
    cert, key = ca
    backends = " ".join(f"127.0.0.1:{port}" for port in upstreams)
    pinned_sites = "".join(
        f"""
localhost:{port} {{
	bind 127.0.0.1
	tls internal
	respond /metrics 404
	reverse_proxy 127.0.0.1:{upstream}
}}
"""
        for port, upstream in (pinned or {}).items()
    )
    return f"""{{
	admin 127.0.0.1:{admin_port}
	skip_install_trust
	http_port {http_port}
	https_port {https_port}
	pki {{
		ca local {{
			name "School IdP local CA"
			root {{
				cert {cert}
				key {key}
			}}
		}}
	}}
}}

localhost:{https_port} {{
	bind 127.0.0.1
	tls internal
	encode gzip
	respond /metrics 404
	reverse_proxy {backends} {{
		lb_policy round_robin
		lb_try_duration 5s
		health_uri /readyz
		health_interval 5s
		health_timeout 3s
		# Close an idle upstream connection before gunicorn does (its keepalive is 2 s), so that
		# no request goes out on a connection the instance is closing (a 502 with nothing down).
		transport http {{
			keepalive 1s
		}}
	}}
}}
{pinned_sites}"""


# --- processes ----------------------------------------------------------------------------
@dataclass
class Process:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Stop the process group this harness made for it (gunicorn's workers too): SIGTERM, then
        SIGKILL for whatever lingers."""
        signal_group(self.process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=5)


def signal_group(pid: int, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError):  # the whole group has exited
        os.killpg(pid, signum)


class Processes:
    """Starts each process in a session of its own and stops every one of them at the end."""

    def __init__(self, log_dir: Path, cwd: Path) -> None:
        self.log_dir = log_dir
        self.cwd = cwd
        self.started: list[Process] = []

    def start(self, name: str, command: list[str], env: dict[str, str]) -> Process:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:  # the child keeps its own copy
            process = subprocess.Popen(
                command,
                env=env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = Process(name, process, log_path)
        self.started.append(started)
        return started

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (exit {p.process.poll()})\n{p.log()[-3000:]}" for p in self.started)

    def stop_all(self) -> None:
        # Signal every group first, then reap them: they shut down in parallel.
        for started in self.started:
            signal_group(started.process.pid, signal.SIGTERM)
        for started in self.started:
            started.stop()
