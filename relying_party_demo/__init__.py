"""The demo school portal: signs in through the district's OpenID Connect provider."""

from __future__ import annotations

from flask import Flask

from relying_party_demo.clock import Clock
from relying_party_demo.config import PortalSettings


def create_app(settings: PortalSettings | None = None, *, clock: Clock | None = None) -> Flask:
    """Build the portal: settings, database, server-side sessions, the provider's client, pages."""
    from relying_party_demo.app import (
        configure,
        init_db,
        init_oauth,
        init_sessions,
        register_blueprints,
        register_error_handlers,
    )
    from relying_party_demo.language import init_language

    settings = settings or PortalSettings.from_env()
    settings.validate()
    app = Flask(__name__, instance_relative_config=True)
    configure(app, settings, clock)
    init_db(app)
    init_sessions(app)
    init_oauth(app)
    register_blueprints(app)
    register_error_handlers(app)
    init_language(app, secure=settings.uses_https)
    return app
