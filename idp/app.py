"""The pieces ``create_app`` puts together, each a few lines that wire one part."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from idp.accounts.devices import DeviceCookies
from idp.accounts.hashing import BoundedPasswordHasher
from idp.cache import init_redis
from idp.clock import Clock, SystemClock
from idp.config import Settings, resolve_database_url, resolve_secret_key
from idp.errors import register_error_handlers
from idp.extensions import db, migrate
from idp.oauth.server import init_oauth
from idp.policy import HashingPolicy, LockoutPolicy, SessionPolicy, TokenPolicy
from idp.runtime import Runtime, install_runtime
from idp.web import init_web

__all__ = [
    "configure",
    "init_db",
    "init_oauth",
    "init_redis",
    "init_web",
    "register_blueprints",
    "register_cli",
    "register_error_handlers",
]


def configure(app: Flask, settings: Settings, *, clock: Clock | None = None) -> None:
    instance = Path(app.instance_path)
    app.config.update(
        SECRET_KEY=resolve_secret_key(settings, instance),
        SQLALCHEMY_DATABASE_URI=resolve_database_url(settings.database_url, instance),
        # No pool_pre_ping: a round trip on every checkout. idp.db checks pooled PostgreSQL
        # connections without one, and pings only those that may be gone.
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": False},
        JSON_SORT_KEYS=False,
    )
    clock = clock or SystemClock()
    install_runtime(
        app,
        Runtime(
            settings=settings,
            clock=clock,
            hasher=BoundedPasswordHasher(HashingPolicy.from_settings(settings)),
            session_policy=SessionPolicy.from_settings(settings),
            token_policy=TokenPolicy.from_settings(settings),
            devices=DeviceCookies(
                app.config["SECRET_KEY"], clock=clock, policy=LockoutPolicy.from_settings(settings)
            ),
        ),
    )


def init_db(app: Flask) -> None:
    # Import every model so that the metadata (and Alembic) sees all tables.
    from idp import models  # noqa: F401

    db.init_app(app)
    migrate.init_app(app, db, directory=str(migrations_directory()))


def migrations_directory() -> Path:
    """The Alembic folder at the top of the checkout (the project installs editable)."""
    return Path(__file__).resolve().parent.parent / "migrations"


def register_blueprints(app: Flask) -> None:
    from idp.accounts.password_change_views import bp as password_change_bp
    from idp.accounts.preferences_views import bp as preferences_bp
    from idp.accounts.recovery_views import bp as recovery_bp
    from idp.accounts.registration_views import bp as registration_bp
    from idp.accounts.views import bp as accounts_bp
    from idp.oauth.views import bp as oauth_bp
    from idp.ops import bp as ops_bp

    app.register_blueprint(accounts_bp)
    app.register_blueprint(registration_bp)
    app.register_blueprint(preferences_bp)
    app.register_blueprint(recovery_bp)
    app.register_blueprint(password_change_bp)
    app.register_blueprint(oauth_bp)
    app.register_blueprint(ops_bp)


def register_cli(app: Flask) -> None:
    from idp.cli import register_commands

    register_commands(app)
