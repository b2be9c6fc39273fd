"""An OpenID Connect provider for school portals."""

from __future__ import annotations

from flask import Flask

from idp.clock import Clock, SystemClock
from idp.config import Settings


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> Flask:
    """Build the provider: configuration, database, services, pages, OAuth, limits, errors, CLI."""
    from idp.cli import register_cli
    from idp.logs import configure_logging
    from idp.web import init_web
    from idp.web.access_log import init_request_log
    from idp.web.app import configure, init_db, init_oauth, init_services, register_blueprints
    from idp.web.errors import register_error_handlers
    from idp.web.rate_limits import init_rate_limits

    app = Flask(__name__, instance_relative_config=True)
    settings = settings or Settings.from_env()
    configure_logging(settings.log_format)
    configure(app, settings)
    init_request_log(app)  # the first hooks: every later one runs with the request's id
    init_db(app)
    services = init_services(app, settings, clock=clock or SystemClock())
    init_web(app, services)
    init_oauth(app, services)
    register_blueprints(app)
    init_rate_limits(app, services)
    register_error_handlers(app)
    register_cli(app)
    return app
