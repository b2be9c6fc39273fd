"""An OpenID Connect provider for school portals."""

from __future__ import annotations

from flask import Flask

from idp.clock import Clock
from idp.config import Settings


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> Flask:
    """Build the provider: configuration, database, Redis, OAuth, pages, errors, CLI."""
    from idp.app import (
        configure,
        init_db,
        init_oauth,
        init_redis,
        init_web,
        register_blueprints,
        register_cli,
        register_error_handlers,
    )

    app = Flask(__name__, instance_relative_config=True)
    configure(app, settings or Settings.from_env(), clock=clock)
    init_db(app)
    init_redis(app)
    init_web(app)
    init_oauth(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_cli(app)
    return app
