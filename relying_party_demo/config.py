"""Settings of the demo portal: typed, read from ``RP_*`` variables, validated once at start."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from filelock import FileLock

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
DEFAULT_BASE_URL = "http://127.0.0.1:5001"
DEFAULT_ISSUER = "http://127.0.0.1:5000"
DEFAULT_DATABASE_URL = "sqlite:///portal.db"
DEFAULT_DISTRICT_NAME = "School District"
# File names inside the instance folder, which the provider's files may share in a checkout.
SECRET_FILE = "portal_secret_key"  # noqa: S105 (a file name, not a secret)
SCHEMA_LOCK = "portal_schema.lock"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class PortalSettings:
    client_id: str
    client_secret: str
    issuer: str = DEFAULT_ISSUER
    base_url: str = DEFAULT_BASE_URL
    secret_key: str = ""  # empty: generated once into the instance folder
    idle_seconds: int = 900
    database_url: str = DEFAULT_DATABASE_URL
    http_timeout: float = 10.0
    # The district the portal serves, named on printed records (the provider's default name).
    district_name: str = DEFAULT_DISTRICT_NAME
    # The district's clocks (an IANA name): times a parent reads are shown in it.
    timezone: str = "UTC"

    @property
    def redirect_uri(self) -> str:
        return f"{self.base_url}/callback"

    @property
    def post_logout_redirect_uri(self) -> str:
        return f"{self.base_url}/"

    @property
    def uses_https(self) -> bool:
        return self.base_url.startswith("https://")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PortalSettings:
        """Read and validate the ``RP_*`` variables."""
        env = os.environ if environ is None else environ

        def text(name: str, default: str = "") -> str:
            return env.get(name, default).strip()

        idle = text("RP_IDLE_SECONDS", "900")
        try:
            idle_seconds = int(idle)
        except ValueError:
            raise ConfigError(f"RP_IDLE_SECONDS must be a whole number of seconds (got {idle!r}).") from None
        settings = cls(
            client_id=text("RP_CLIENT_ID"),
            client_secret=text("RP_CLIENT_SECRET"),
            issuer=text("RP_ISSUER", DEFAULT_ISSUER).rstrip("/"),
            base_url=text("RP_BASE_URL", DEFAULT_BASE_URL).rstrip("/"),
            secret_key=text("RP_SECRET_KEY"),
            idle_seconds=idle_seconds,
            database_url=text("RP_DATABASE_URL", DEFAULT_DATABASE_URL),
            district_name=text("RP_DISTRICT_NAME", DEFAULT_DISTRICT_NAME) or DEFAULT_DISTRICT_NAME,
            timezone=text("RP_TIMEZONE", "UTC") or "UTC",
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse settings the portal cannot work with, naming the variable."""
        seed_hint = "run `idp demo seed` and use the settings it prints"
        if not self.client_id:
            raise ConfigError(f"RP_CLIENT_ID is required: {seed_hint}.")
        if not self.client_secret:
            raise ConfigError(f"RP_CLIENT_SECRET is required (a confidential client): {seed_hint}.")
        _check_url("RP_ISSUER", self.issuer)
        _check_url("RP_BASE_URL", self.base_url)
        if urlsplit(self.base_url).path not in ("", "/"):
            raise ConfigError(f"RP_BASE_URL must be an origin without a path (got {self.base_url!r}).")
        if self.idle_seconds < 1:
            raise ConfigError(f"RP_IDLE_SECONDS must be at least 1 (got {self.idle_seconds}).")
        if self.secret_key and len(self.secret_key) < 32:
            raise ConfigError("RP_SECRET_KEY must be at least 32 characters (or unset in development).")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"RP_TIMEZONE must be a time zone name such as America/Chicago (got {self.timezone!r})."
            ) from None
        if not self.database_url:
            raise ConfigError("RP_DATABASE_URL may not be empty (unset: SQLite in the instance folder).")


def _check_url(name: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL (got {value!r}).")
    if parts.query or parts.fragment:
        raise ConfigError(f"{name} may not carry a query or fragment (got {value!r}).")
    # Tokens and cookies cross the network: plain http only on this machine.
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ConfigError(f"{name} must use https unless it is on this machine (got {value!r}).")


def resolve_secret_key(settings: PortalSettings, instance_path: Path) -> str:
    """Return the configured secret, or one generated once into the instance folder."""
    if settings.secret_key:
        return settings.secret_key
    instance_path.mkdir(parents=True, exist_ok=True)
    secret_file = instance_path / SECRET_FILE
    # Several gunicorn workers start together: the lock makes exactly one of them write.
    with FileLock(str(secret_file) + ".lock"):
        if not secret_file.exists():
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        return secret_file.read_text().strip()


def resolve_database_url(url: str, instance_path: Path) -> str:
    """Place a relative SQLite path in the instance folder."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != "sqlite:///:memory:":
        path = Path(url[len(prefix) :])
        if not path.is_absolute():
            instance_path.mkdir(parents=True, exist_ok=True)
            return prefix + str(instance_path / path)
    return url
