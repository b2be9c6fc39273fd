"""Settings: typed, read from ``IDP_*`` variables, validated once at start."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from filelock import FileLock
from limits import parse_many

from idp.counters.sentinel import SCHEME as SENTINEL_SCHEME
from idp.counters.sentinel import InvalidSentinelURL, parse_sentinel_url

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}
DEFAULT_SECRET = ""  # an unset secret means "generate one" in development
ONE_YEAR_SECONDS = 31_536_000
LOG_FORMATS = ("json", "text")
# /metrics answers these addresses without a token (idp.web.metrics): the host itself.
DEFAULT_METRICS_ALLOW = "127.0.0.1/32,::1/128"
MIN_METRICS_TOKEN_LENGTH = 16
# Where the signing keys live (idp.keys.stores): a folder, or the database, encrypted.
KEY_STORES = ("files", "database")


class ConfigError(ValueError):
    """A setting is missing, malformed or unsafe; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    issuer: str = "http://127.0.0.1:5000"
    database_url: str = "sqlite:///idp.db"
    redis_url: str = "memory://"
    redis_key_prefix: str = "idp:"
    secret_key: str = DEFAULT_SECRET
    keys_dir: Path = Path("keys")
    keys_passphrase: str | None = None
    keys_store: str = "files"
    smtp_url: str | None = None
    mail_from: str = "no-reply@localhost"
    # How long the SMTP client waits for a reply (RFC 5321 4.5.3.2: 5 minutes; the reply after
    # the message's end gets twice this, the RFC's 10; idp.mail.delivery.SMTPTimeouts).
    smtp_timeout_seconds: int = 300
    lockout_threshold: int = 10
    lockout_seconds: int = 300
    lockout_window_seconds: int = 900
    rate_limit_signin: str = "100/minute"
    rate_limit_register: str = "60/hour"
    rate_limit_recovery: str = "60/hour"
    rate_limit_token: str = "6000/minute"  # noqa: S105 (a rate, not a secret)
    access_id_failures: int = 5
    access_id_pause_seconds: int = 900
    trusted_proxies: int = 0
    code_seconds: int = 60
    access_token_seconds: int = 600
    id_token_seconds: int = 600
    refresh_token_seconds: int = 2_592_000
    refresh_idle_seconds: int = 1_209_600
    jwks_max_age: int = 300
    recovery_token_seconds: int = 1800
    session_idle_seconds: int = 1800
    session_max_seconds: int = 43_200
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19_456
    argon2_parallelism: int = 1
    argon2_max_concurrent: int = 4
    require_email_verification: bool = False
    mail_poll_seconds: int = 2
    retention_seconds: int = 2_592_000
    keys_check_seconds: int = 2
    languages: tuple[str, ...] = ("en", "es")
    max_form_bytes: int = 64 * 1024
    temporary_password_seconds: int = 604_800
    hsts_seconds: int = 31_536_000
    hsts_include_subdomains: bool = False
    staff_idle_seconds: int = 900
    impersonation_seconds: int = 1800
    # The district's time zone (IANA name) for the dates people read: the console's pages.
    timezone: str = "UTC"
    # Life of a guardian invitation's link (idp.students.invitations): 14 days.
    invitation_seconds: int = 1_209_600
    # Logs: one JSON object per line, or readable text (idp.logs); JSON by default in production.
    log_format: str = "text"
    # Who may read /metrics (idp.web.metrics): a bearer token, or a client in these networks.
    metrics_token: str | None = None
    metrics_allow: tuple[IPv4Network | IPv6Network, ...] = (
        ip_network("127.0.0.1/32"),
        ip_network("::1/128"),
    )
    # The port of ``idp worker``'s own /metrics (idp.worker.metrics); 0: none.
    worker_metrics_port: int = 0

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def uses_https(self) -> bool:
        return self.issuer.startswith("https://")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate settings from ``IDP_*`` variables."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        idp_env = reader.choice("IDP_ENV", "development", ("development", "production", "test"))
        production = idp_env == "production"
        redis_default = "" if production else "memory://"
        settings = cls(
            env=idp_env,
            issuer=reader.url("IDP_ISSUER", "http://127.0.0.1:5000").rstrip("/"),
            database_url=reader.text("IDP_DATABASE_URL", "sqlite:///idp.db"),
            redis_url=reader.text("IDP_REDIS_URL", redis_default),
            redis_key_prefix=reader.text("IDP_REDIS_KEY_PREFIX", "idp:"),
            secret_key=reader.text("IDP_SECRET_KEY", DEFAULT_SECRET),
            keys_dir=Path(reader.text("IDP_KEYS_DIR", "keys")).absolute(),
            keys_passphrase=reader.text("IDP_KEYS_PASSPHRASE", "") or None,
            keys_store=reader.choice("IDP_KEYS_STORE", "files", KEY_STORES),
            smtp_url=reader.text("IDP_SMTP_URL", "") or None,
            mail_from=reader.text("IDP_MAIL_FROM", "no-reply@localhost"),
            smtp_timeout_seconds=reader.positive("IDP_SMTP_TIMEOUT_SECONDS", 300),
            lockout_threshold=reader.positive("IDP_LOCKOUT_THRESHOLD", 10),
            lockout_seconds=reader.positive("IDP_LOCKOUT_SECONDS", 300),
            lockout_window_seconds=reader.positive("IDP_LOCKOUT_WINDOW_SECONDS", 900),
            rate_limit_signin=reader.text("IDP_RATE_LIMIT_SIGNIN", "100/minute"),
            rate_limit_register=reader.text("IDP_RATE_LIMIT_REGISTER", "60/hour"),
            rate_limit_recovery=reader.text("IDP_RATE_LIMIT_RECOVERY", "60/hour"),
            rate_limit_token=reader.text("IDP_RATE_LIMIT_TOKEN", "6000/minute"),
            access_id_failures=reader.positive("IDP_ACCESS_ID_FAILURES", 5),
            access_id_pause_seconds=reader.positive("IDP_ACCESS_ID_PAUSE_SECONDS", 900),
            trusted_proxies=reader.non_negative("IDP_TRUSTED_PROXIES", 0),
            code_seconds=reader.positive("IDP_CODE_SECONDS", 60),
            access_token_seconds=reader.positive("IDP_ACCESS_TOKEN_SECONDS", 600),
            id_token_seconds=reader.positive("IDP_ID_TOKEN_SECONDS", 600),
            refresh_token_seconds=reader.positive("IDP_REFRESH_TOKEN_SECONDS", 2_592_000),
            refresh_idle_seconds=reader.positive("IDP_REFRESH_IDLE_SECONDS", 1_209_600),
            jwks_max_age=reader.positive("IDP_JWKS_MAX_AGE", 300),
            recovery_token_seconds=reader.positive("IDP_RECOVERY_TOKEN_SECONDS", 1800),
            session_idle_seconds=reader.positive("IDP_SESSION_IDLE_SECONDS", 1800),
            session_max_seconds=reader.positive("IDP_SESSION_MAX_SECONDS", 43_200),
            argon2_time_cost=reader.positive("IDP_ARGON2_TIME_COST", 2),
            argon2_memory_kib=reader.at_least("IDP_ARGON2_MEMORY_KIB", 19_456, minimum=8),
            argon2_parallelism=reader.positive("IDP_ARGON2_PARALLELISM", 1),
            argon2_max_concurrent=reader.positive("IDP_ARGON2_MAX_CONCURRENT", 4),
            require_email_verification=reader.boolean("IDP_REQUIRE_EMAIL_VERIFICATION", False),
            mail_poll_seconds=reader.positive("IDP_MAIL_POLL_SECONDS", 2),
            retention_seconds=reader.positive("IDP_RETENTION_SECONDS", 2_592_000),
            keys_check_seconds=reader.positive("IDP_KEYS_CHECK_SECONDS", 2),
            languages=reader.languages("IDP_LANGUAGES", ("en", "es")),
            temporary_password_seconds=reader.positive("IDP_TEMPORARY_PASSWORD_SECONDS", 604_800),
            hsts_seconds=reader.positive("IDP_HSTS_SECONDS", 31_536_000),
            hsts_include_subdomains=reader.boolean("IDP_HSTS_INCLUDE_SUBDOMAINS", False),
            staff_idle_seconds=reader.positive("IDP_STAFF_IDLE_SECONDS", 900),
            impersonation_seconds=reader.positive("IDP_IMPERSONATION_SECONDS", 1800),
            timezone=reader.time_zone("IDP_TIMEZONE", "UTC"),
            invitation_seconds=reader.positive("IDP_INVITATION_SECONDS", 1_209_600),
            log_format=reader.choice("IDP_LOG_FORMAT", "json" if production else "text", LOG_FORMATS),
            metrics_token=reader.text("IDP_METRICS_TOKEN", "") or None,
            metrics_allow=reader.networks("IDP_METRICS_ALLOW", DEFAULT_METRICS_ALLOW),
            worker_metrics_port=reader.non_negative("IDP_WORKER_METRICS_PORT", 0),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse settings that cannot work, and in production those that are unsafe."""
        if not self.redis_url:
            raise ConfigError("IDP_REDIS_URL is required in production (redis://host:6379/0).")
        scheme = urlsplit(self.redis_url).scheme
        if scheme not in {"memory", "redis", "rediss", "unix", SENTINEL_SCHEME}:
            raise ConfigError(
                "IDP_REDIS_URL must be memory://, redis://, rediss://, unix:// or "
                f"{SENTINEL_SCHEME}://, not {scheme!r}."
            )
        if scheme == SENTINEL_SCHEME:
            try:
                parse_sentinel_url(self.redis_url)
            except InvalidSentinelURL as error:
                raise ConfigError(
                    f"IDP_REDIS_URL: {error} "
                    f"({SENTINEL_SCHEME}://[:password@]host:port[,host:port…]/MASTER_NAME[/db])."
                ) from None
        for name, rate in (
            ("IDP_RATE_LIMIT_SIGNIN", self.rate_limit_signin),
            ("IDP_RATE_LIMIT_REGISTER", self.rate_limit_register),
            ("IDP_RATE_LIMIT_RECOVERY", self.rate_limit_recovery),
            ("IDP_RATE_LIMIT_TOKEN", self.rate_limit_token),
        ):
            try:
                parse_many(rate)
            except ValueError:
                raise ConfigError(f"{name} must be a rate such as 100/minute (got {rate!r}).") from None
        if self.metrics_token is not None and len(self.metrics_token) < MIN_METRICS_TOKEN_LENGTH:
            raise ConfigError(
                f"IDP_METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_LENGTH} characters when set."
            )
        if self.worker_metrics_port > 65535:
            raise ConfigError(
                f"IDP_WORKER_METRICS_PORT must be a port number (got {self.worker_metrics_port})."
            )
        if self.keys_store == "database" and not self.keys_passphrase:
            raise ConfigError(
                "IDP_KEYS_STORE=database encrypts the private keys in the database with "
                "IDP_KEYS_PASSPHRASE: set it to a long random secret, kept apart from the database backups."
            )
        if self.session_idle_seconds > self.session_max_seconds:
            raise ConfigError("IDP_SESSION_IDLE_SECONDS may not exceed IDP_SESSION_MAX_SECONDS.")
        if not self.is_production:
            return
        if scheme == "memory":
            raise ConfigError(
                "IDP_REDIS_URL=memory:// keeps lockout counters in one process; "
                "production needs a real Redis (redis://host:6379/0)."
            )
        if len(self.secret_key) < 32:
            raise ConfigError("IDP_SECRET_KEY must be set to at least 32 random characters in production.")
        if self.hsts_seconds < ONE_YEAR_SECONDS:
            raise ConfigError(
                f"IDP_HSTS_SECONDS must be at least {ONE_YEAR_SECONDS} (one year) in production "
                f"(got {self.hsts_seconds})."
            )
        host = urlsplit(self.issuer).hostname or ""
        if not self.uses_https and host not in LOOPBACK_HOSTS:
            raise ConfigError(f"IDP_ISSUER must use https in production (got {self.issuer!r}).")
        if self.smtp_url is None or self.smtp_url.startswith("file:"):
            raise ConfigError("IDP_SMTP_URL must name an SMTP server in production.")
        smtp = urlsplit(self.smtp_url)
        if smtp.scheme == "smtp" and (smtp.username or smtp.password) and smtp.hostname not in LOOPBACK_HOSTS:
            raise ConfigError(
                "IDP_SMTP_URL sends credentials in the clear over smtp:// to another host; "
                "use smtp+starttls:// or smtps:// in production."
            )


def resolve_secret_key(settings: Settings, instance_path: Path) -> str:
    """Return the configured secret, or one generated once into the instance folder."""
    if settings.secret_key:
        return settings.secret_key
    instance_path.mkdir(parents=True, exist_ok=True)
    secret_file = instance_path / "secret_key"
    # Several workers may start together: the lock makes exactly one of them write.
    with FileLock(str(secret_file) + ".lock"):
        if not secret_file.exists():
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        return secret_file.read_text().strip()


def resolve_database_url(url: str, instance_path: Path) -> str:
    """Place a relative SQLite path in the instance folder, as Flask-SQLAlchemy does."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != "sqlite:///:memory:":
        path = Path(url[len(prefix) :])
        if not path.is_absolute():
            instance_path.mkdir(parents=True, exist_ok=True)
            return prefix + str(instance_path / path)
    return url


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._env = environ

    def text(self, name: str, default: str) -> str:
        return self._env.get(name, default).strip()

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)} (got {value!r}).")
        return value

    def url(self, name: str, default: str) -> str:
        value = self.text(name, default)
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ConfigError(f"{name} must be an http(s) URL (got {value!r}).")
        if parts.query or parts.fragment:
            raise ConfigError(f"{name} may not carry a query or fragment (got {value!r}).")
        return value

    def at_least(self, name: str, default: int, minimum: int) -> int:
        raw = self.text(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number (got {raw!r}).") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum} (got {value}).")
        return value

    def networks(self, name: str, default: str) -> tuple[IPv4Network | IPv6Network, ...]:
        """Comma-separated addresses or CIDR networks; empty means none."""
        found = []
        for item in self.text(name, default).split(","):
            if not item.strip():
                continue
            try:
                found.append(ip_network(item.strip(), strict=False))
            except ValueError:
                raise ConfigError(
                    f"{name} must list IP addresses or networks such as 10.0.0.0/8 (got {item.strip()!r})."
                ) from None
        return tuple(found)

    def time_zone(self, name: str, default: str) -> str:
        value = self.text(name, default)
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"{name} must be an IANA time zone such as America/Chicago (got {value!r})."
            ) from None
        return value

    def positive(self, name: str, default: int) -> int:
        return self.at_least(name, default, minimum=1)

    def non_negative(self, name: str, default: int) -> int:
        return self.at_least(name, default, minimum=0)

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.text(name, "true" if default else "false").lower()
        if raw in {"1", "true", "yes", "on"}:
            return True
        if raw in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} must be true or false (got {raw!r}).")

    def languages(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        raw = self.text(name, ",".join(default))
        codes = tuple(code.strip() for code in raw.split(",") if code.strip())
        if not codes:
            raise ConfigError(f"{name} must list at least one language code.")
        return codes
