"""The portal's settings: read from RP_* variables and refused, with the variable named, when unusable."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from relying_party_demo.config import (
    SECRET_FILE,
    ConfigError,
    PortalSettings,
    resolve_database_url,
    resolve_secret_key,
)

REQUIRED = {"RP_CLIENT_ID": "demo-portal", "RP_CLIENT_SECRET": "s3cret"}


def test_defaults_follow_the_design() -> None:
    settings = PortalSettings.from_env(REQUIRED)
    assert settings.issuer == "http://127.0.0.1:5000"
    assert settings.base_url == "http://127.0.0.1:5001"
    assert settings.redirect_uri == "http://127.0.0.1:5001/callback"
    assert settings.post_logout_redirect_uri == "http://127.0.0.1:5001/"
    assert settings.idle_seconds == 900
    assert settings.database_url == "sqlite:///portal.db"
    assert settings.secret_key == ""


def test_every_setting_is_read() -> None:
    settings = PortalSettings.from_env(
        {
            **REQUIRED,
            "RP_ISSUER": "https://sso.district.example/",
            "RP_BASE_URL": "https://portal.district.example",
            "RP_SECRET_KEY": "k" * 40,
            "RP_IDLE_SECONDS": "60",
            "RP_DATABASE_URL": "postgresql+psycopg://portal@db/portal",
        }
    )
    assert settings.issuer == "https://sso.district.example"
    assert settings.uses_https and settings.idle_seconds == 60
    assert settings.database_url.startswith("postgresql+psycopg://")


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"RP_CLIENT_SECRET": "s"}, "RP_CLIENT_ID"),
        ({"RP_CLIENT_ID": "c"}, "RP_CLIENT_SECRET"),
        ({**REQUIRED, "RP_ISSUER": "127.0.0.1:5000"}, "RP_ISSUER"),
        ({**REQUIRED, "RP_ISSUER": "http://sso.district.example"}, "RP_ISSUER"),
        ({**REQUIRED, "RP_BASE_URL": "http://127.0.0.1:5001/portal"}, "RP_BASE_URL"),
        ({**REQUIRED, "RP_BASE_URL": "http://127.0.0.1:5001/?x=1"}, "RP_BASE_URL"),
        ({**REQUIRED, "RP_IDLE_SECONDS": "fifteen"}, "RP_IDLE_SECONDS"),
        ({**REQUIRED, "RP_IDLE_SECONDS": "0"}, "RP_IDLE_SECONDS"),
        ({**REQUIRED, "RP_SECRET_KEY": "short"}, "RP_SECRET_KEY"),
    ],
)
def test_unusable_settings_are_refused_naming_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        PortalSettings.from_env(environ)


def test_a_missing_secret_key_is_generated_once_into_the_instance_folder(tmp_path: Path) -> None:
    settings = PortalSettings.from_env(REQUIRED)
    first = resolve_secret_key(settings, tmp_path / "instance")
    assert len(first) >= 32 and resolve_secret_key(settings, tmp_path / "instance") == first
    secret_file = tmp_path / "instance" / SECRET_FILE
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


def test_a_relative_sqlite_path_lands_in_the_instance_folder(tmp_path: Path) -> None:
    assert resolve_database_url("sqlite:///portal.db", tmp_path) == f"sqlite:///{tmp_path}/portal.db"
    assert resolve_database_url("sqlite:////abs/portal.db", tmp_path) == "sqlite:////abs/portal.db"
