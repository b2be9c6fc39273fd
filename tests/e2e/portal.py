"""The demo portal beside the provider in the end-to-end tests: registered with the real ``idp`` CLI,
served by real gunicorn (``relying_party_demo:create_app()``) on a port of its own.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.conftest import District, Provider, launch, provider_env, run_idp

PORTAL_SECRET_KEY = "e2e-portal-secret-key-that-is-long-enough-0123456789"


@dataclass(frozen=True)
class PortalClient:
    client_id: str
    client_secret: str
    base_url: str


def register_portal(district: District, base_url: str, *, backchannel: bool = True) -> PortalClient:
    """Register the portal as ``idp demo seed`` does, for the port it really listens on."""
    env = provider_env(district.database_url, district.keys_dir, issuer="http://127.0.0.1")
    args = [
        *("clients", "create", "--name", "Demo School Portal", "--first-party"),
        *("--redirect-uri", f"{base_url}/callback", "--post-logout-redirect-uri", f"{base_url}/"),
        *("--scope", "openid profile email students offline_access"),
    ]
    if backchannel:
        args += ["--backchannel-logout-uri", f"{base_url}/backchannel-logout"]
    registered = json.loads(run_idp(env, *args, "--json"))
    return PortalClient(registered["client_id"], registered["client_secret"], base_url)


def portal_env(issuer: str, client: PortalClient, database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a portal process: this machine's, minus any RP_* or IDP_* setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RP_", "IDP_"))}
    env.update(
        RP_ISSUER=issuer,
        RP_CLIENT_ID=client.client_id,
        RP_CLIENT_SECRET=client.client_secret,
        RP_BASE_URL=client.base_url,
        RP_DATABASE_URL=database_url,
        RP_SECRET_KEY=PORTAL_SECRET_KEY,
    )
    env.update(extra)
    return env


def launch_portal(env: dict[str, str], port: int, log_path: Path, *, workers: int) -> Provider:
    """Start the portal under gunicorn; the harness's ``Provider`` handle waits for and stops it."""
    return launch(env, port, log_path, workers=workers, threads=2, app="relying_party_demo:create_app()")
