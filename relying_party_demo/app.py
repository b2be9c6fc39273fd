"""The pieces ``create_app`` puts together, each a few lines that wire one part."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from flask import Flask, g
from flask_wtf import CSRFProtect
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.wrappers import Response

from relying_party_demo.clock import Clock, SystemClock
from relying_party_demo.config import SCHEMA_LOCK, PortalSettings, resolve_database_url, resolve_secret_key
from relying_party_demo.db import create_schema, make_engine
from relying_party_demo.last_page import LastPages
from relying_party_demo.provider import init_oauth as init_district_client
from relying_party_demo.sessions import SessionStore
from relying_party_demo.web_session import COOKIE_NAME, ServerSessionInterface

__all__ = [
    "configure",
    "init_db",
    "init_oauth",
    "init_sessions",
    "portal",
    "register_blueprints",
    "register_error_handlers",
]

EXTENSION_KEY = "relying_party_demo"
csrf = CSRFProtect()


class Portal:
    """What the views need besides the request: settings, clock, database, signed cookies."""

    def __init__(self, settings: PortalSettings, clock: Clock, engine: Engine, last_pages: LastPages) -> None:
        self.settings = settings
        self.clock = clock
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.last_pages = last_pages

    def db(self) -> Session:
        """This app context's database session, closed at teardown."""
        if "rp_db" not in g:
            g.rp_db = self.sessions()
        db: Session = g.rp_db
        return db

    def store(self) -> SessionStore:
        return SessionStore(self.db(), clock=self.clock, idle=timedelta(seconds=self.settings.idle_seconds))


def portal() -> Portal:
    from flask import current_app

    found: Portal = current_app.extensions[EXTENSION_KEY]
    return found


def configure(app: Flask, settings: PortalSettings, clock: Clock | None) -> None:
    instance = Path(app.instance_path)
    secure = settings.uses_https
    secret_key = resolve_secret_key(settings, instance)
    app.config.update(
        SECRET_KEY=secret_key,
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=64 * 1024,
        WTF_CSRF_TIME_LIMIT=None,  # the session's idle timeout bounds the token's life
        WTF_CSRF_SSL_STRICT=secure,
        PREFERRED_URL_SCHEME="https" if secure else "http",
    )
    engine = make_engine(resolve_database_url(settings.database_url, instance))
    app.extensions[EXTENSION_KEY] = Portal(settings, clock or SystemClock(), engine, LastPages(secret_key))


def init_db(app: Flask) -> None:
    found: Portal = app.extensions[EXTENSION_KEY]
    create_schema(found.engine, Path(app.instance_path) / SCHEMA_LOCK)

    @app.teardown_appcontext
    def _close_db(_: BaseException | None) -> None:
        db = g.pop("rp_db", None)
        if db is not None:
            db.close()


def init_sessions(app: Flask) -> None:
    """Flask's session, server-side; CSRF tokens on every form (their secret lives in it)."""
    found: Portal = app.extensions[EXTENSION_KEY]
    app.session_interface = ServerSessionInterface(
        found.store, static_prefix=app.static_url_path or "/static"
    )
    csrf.init_app(app)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # The callback URL carries the code: never send it to another site as a Referer.
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; frame-ancestors 'none'; form-action 'self' http: https:",
            )
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def init_oauth(app: Flask) -> None:
    found: Portal = app.extensions[EXTENSION_KEY]
    init_district_client(app, found.settings, found.clock)


def register_blueprints(app: Flask) -> None:
    from relying_party_demo.views import bp

    app.register_blueprint(bp)
    csrf.exempt("relying_party_demo.views.backchannel_logout")


def register_error_handlers(app: Flask) -> None:
    from relying_party_demo.errors import register

    register(app)
