"""Settings read from IDP_* variables: DESIGN.md's defaults, one-line errors, production safety."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from idp.config import ConfigError, Settings

SAFE_PRODUCTION = {
    "IDP_ENV": "production",
    "IDP_ISSUER": "https://id.district.example",
    "IDP_DATABASE_URL": "postgresql+psycopg://idp@db.district.example/idp",
    "IDP_REDIS_URL": "redis://redis.district.example:6379/0",
    "IDP_SECRET_KEY": "k" * 48,
    "IDP_SMTP_URL": "smtp+starttls://mailer:p%40ss@mail.district.example:587",
}


def production(**changes: str | None) -> dict[str, str]:
    """Return the safe production environment with ``changes`` applied (None removes a variable)."""
    env = dict(SAFE_PRODUCTION)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def test_defaults_match_the_configuration_table():
    settings = Settings.from_env({})

    assert settings.env == "development"
    assert settings.issuer == "http://127.0.0.1:5000"
    assert settings.database_url == "sqlite:///idp.db"
    assert settings.redis_url == "memory://"
    assert settings.secret_key == ""  # generated into the instance folder by create_app
    assert settings.keys_dir == Path("keys").absolute()
    assert settings.keys_passphrase is None
    assert settings.smtp_url is None
    assert settings.mail_from == "no-reply@localhost"
    assert (settings.lockout_threshold, settings.lockout_seconds, settings.lockout_window_seconds) == (
        10,
        300,
        900,
    )
    assert (
        settings.rate_limit_signin,
        settings.rate_limit_register,
        settings.rate_limit_recovery,
        settings.rate_limit_token,
    ) == ("100/minute", "60/hour", "60/hour", "6000/minute")
    assert (settings.access_id_failures, settings.access_id_pause_seconds) == (5, 900)
    assert settings.trusted_proxies == 0
    assert (settings.code_seconds, settings.access_token_seconds, settings.id_token_seconds) == (60, 600, 600)
    assert (settings.refresh_token_seconds, settings.refresh_idle_seconds) == (2_592_000, 1_209_600)
    assert settings.jwks_max_age == 300
    assert settings.recovery_token_seconds == 1800
    assert (settings.session_idle_seconds, settings.session_max_seconds) == (1800, 43_200)
    assert (settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism) == (
        2,
        19_456,
        1,
    )
    assert settings.require_email_verification is False
    assert settings.mail_poll_seconds == 2
    assert settings.retention_seconds == 2_592_000
    assert settings.keys_check_seconds == 2
    assert settings.languages == ("en", "es")
    assert not settings.is_production


def test_dataclass_defaults_agree_with_from_env_defaults():
    # from_env resolves the relative keys folder against the working directory.
    assert replace(Settings(), keys_dir=Path("keys").absolute()) == Settings.from_env({})


def test_values_are_read_and_typed():
    settings = Settings.from_env(
        {
            "IDP_ISSUER": "https://id.district.example/",
            "IDP_LOCKOUT_THRESHOLD": " 7 ",
            "IDP_TRUSTED_PROXIES": "0",
            "IDP_REQUIRE_EMAIL_VERIFICATION": "Yes",
            "IDP_LANGUAGES": "es, en",
            "IDP_KEYS_PASSPHRASE": "open sesame",
            "IDP_SMTP_URL": "file:///var/spool/idp",
            "IDP_RETENTION_SECONDS": "86400",
        }
    )

    assert settings.issuer == "https://id.district.example"  # a trailing slash never reaches tokens
    assert settings.lockout_threshold == 7
    assert settings.trusted_proxies == 0
    assert settings.require_email_verification is True
    assert settings.languages == ("es", "en")
    assert settings.keys_passphrase == "open sesame"
    assert settings.smtp_url == "file:///var/spool/idp"
    assert settings.retention_seconds == 86_400


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on"])
def test_true_spellings_are_accepted(raw):
    assert Settings.from_env({"IDP_REQUIRE_EMAIL_VERIFICATION": raw}).require_email_verification is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "off"])
def test_false_spellings_are_accepted(raw):
    assert Settings.from_env({"IDP_REQUIRE_EMAIL_VERIFICATION": raw}).require_email_verification is False


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("IDP_LOCKOUT_THRESHOLD", "ten"),
        ("IDP_LOCKOUT_THRESHOLD", "0"),
        ("IDP_LOCKOUT_SECONDS", "-5"),
        ("IDP_CODE_SECONDS", "1.5"),
        ("IDP_CODE_SECONDS", ""),
        ("IDP_TRUSTED_PROXIES", "-1"),
        ("IDP_ARGON2_MEMORY_KIB", "4"),
        ("IDP_KEYS_CHECK_SECONDS", "2s"),
        ("IDP_RETENTION_SECONDS", "0"),
    ],
)
def test_bad_integer_names_its_variable(name, raw):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: raw})


@pytest.mark.parametrize("raw", ["maybe", "2", "enabled"])
def test_bad_boolean_names_its_variable(raw):
    with pytest.raises(ConfigError, match="IDP_REQUIRE_EMAIL_VERIFICATION"):
        Settings.from_env({"IDP_REQUIRE_EMAIL_VERIFICATION": raw})


@pytest.mark.parametrize(
    "raw",
    [
        "id.district.example",
        "ftp://id.district.example",
        "https://",
        "https://id.district.example/?tenant=1",
        "https://id.district.example/#top",
    ],
)
def test_bad_issuer_url_names_its_variable(raw):
    with pytest.raises(ConfigError, match="IDP_ISSUER"):
        Settings.from_env({"IDP_ISSUER": raw})


def test_unknown_redis_scheme_names_its_variable():
    with pytest.raises(ConfigError, match="IDP_REDIS_URL"):
        Settings.from_env({"IDP_REDIS_URL": "http://redis.example:6379"})


def test_unknown_environment_names_its_variable():
    with pytest.raises(ConfigError, match="IDP_ENV"):
        Settings.from_env({"IDP_ENV": "staging"})


def test_empty_language_list_names_its_variable():
    with pytest.raises(ConfigError, match="IDP_LANGUAGES"):
        Settings.from_env({"IDP_LANGUAGES": " , "})


def test_idle_timeout_longer_than_session_life_is_refused():
    with pytest.raises(ConfigError, match="IDP_SESSION_IDLE_SECONDS"):
        Settings.from_env({"IDP_SESSION_IDLE_SECONDS": "7200", "IDP_SESSION_MAX_SECONDS": "3600"})


def test_safe_production_configuration_is_accepted():
    settings = Settings.from_env(SAFE_PRODUCTION)

    assert settings.is_production
    assert settings.uses_https
    assert settings.redis_url == "redis://redis.district.example:6379/0"


@pytest.mark.parametrize(
    "changes",
    [
        {"IDP_ISSUER": "http://localhost:8000"},
        {"IDP_ISSUER": "http://127.0.0.1:5000"},
        {"IDP_SMTP_URL": "smtps://mailer:secret@mail.district.example:465"},
        {"IDP_SMTP_URL": "smtp://mail.district.example:25"},  # a relay that asks for no credentials
        {"IDP_SMTP_URL": "smtp://mailer:secret@127.0.0.1:25"},  # credentials stay on this host
    ],
)
def test_production_accepts(changes):
    assert Settings.from_env(production(**changes)).is_production


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"IDP_REDIS_URL": None}, "IDP_REDIS_URL"),
        ({"IDP_REDIS_URL": "memory://"}, "IDP_REDIS_URL"),
        ({"IDP_SECRET_KEY": None}, "IDP_SECRET_KEY"),
        ({"IDP_SECRET_KEY": "too-short-for-production"}, "IDP_SECRET_KEY"),
        ({"IDP_ISSUER": "http://id.district.example"}, "IDP_ISSUER"),
        ({"IDP_ISSUER": "http://localhost.district.example"}, "IDP_ISSUER"),
        ({"IDP_SMTP_URL": None}, "IDP_SMTP_URL"),
        ({"IDP_SMTP_URL": "file:///var/spool/idp"}, "IDP_SMTP_URL"),
        ({"IDP_SMTP_URL": "smtp://mailer:secret@mail.district.example:25"}, "IDP_SMTP_URL"),
    ],
)
def test_production_refuses_unsafe_setting(changes, variable):
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env(production(**changes))


def test_development_allows_what_production_refuses():
    settings = Settings.from_env(
        {"IDP_ISSUER": "http://portal.lan:5000", "IDP_SMTP_URL": "file:///tmp/outbox", "IDP_SECRET_KEY": "x"}
    )

    assert settings.redis_url == "memory://"
    assert not settings.is_production


def test_time_zone_is_an_iana_name():
    assert Settings.from_env({"IDP_TIMEZONE": "America/Chicago"}).timezone == "America/Chicago"
    with pytest.raises(ConfigError, match="IDP_TIMEZONE"):
        Settings.from_env({"IDP_TIMEZONE": "Mars/Olympus"})
