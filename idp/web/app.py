"""The Flask app's own parts: its configuration, the database, the services, the blueprints."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from idp.clock import Clock
from idp.config import Settings, resolve_database_url, resolve_secret_key
from idp.db import engine_options, import_models, migrations_directory
from idp.extensions import db, migrate
from idp.oauth.scopes import SUPPORTED_SCOPES
from idp.oauth.server import OAuthServer
from idp.services import Services
from idp.web.context import OAUTH_SERVER_KEY, SERVICES_KEY

log = logging.getLogger(__name__)


def configure(app: Flask, settings: Settings) -> None:
    instance = Path(app.instance_path)
    database_url = resolve_database_url(settings.database_url, instance)
    app.config.update(
        SECRET_KEY=resolve_secret_key(settings, instance),
        SQLALCHEMY_DATABASE_URI=database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(database_url),
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]  # documents keep their order (issuer first)
    # Authlib logs each token it issues at DEBUG ("Issue token %r"): never that, whatever the root level.
    logging.getLogger("authlib").setLevel(logging.INFO)


def init_db(app: Flask) -> None:
    import_models()  # the metadata (and Alembic) sees every table
    db.init_app(app)
    migrate.init_app(app, db, directory=str(migrations_directory()))
    # Registered after Flask-SQLAlchemy's own teardown, so it runs first (Flask runs them in reverse).
    app.teardown_appcontext(_end_the_session)


def _end_the_session(_error: BaseException | None) -> None:
    """End the request's session; a connection that cannot even roll back is thrown away.

    A connection the server or the pooler ended mid-request can fail its closing ROLLBACK (psycopg:
    "received 2 results from command 'ROLLBACK'" through PgBouncer). The response is made by then:
    answering 500 for it would report a failure that did not happen, and the connection, with its
    transaction never ended, must not go back to the pool (on SQLite it would keep the write lock).
    """
    session = db.session()
    # A session is in a transaction only once a statement has taken a connection for it.
    connection = session.connection() if session.in_transaction() else None
    try:
        db.session.remove()
    except SQLAlchemyError as error:
        log.warning("the request's database connection could not be closed cleanly: %s", error)
        db.session.registry.clear()
        if connection is not None:
            connection.invalidate()
            connection.close()


def init_services(app: Flask, settings: Settings, *, clock: Clock) -> Services:
    with app.app_context():
        engine = db.engine  # made by init_db; Flask-SQLAlchemy hands it out inside the app only
    services = Services(
        settings,
        session=db.session,
        engine=engine,
        clock=clock,
        secret_key=app.config["SECRET_KEY"],
        instance_path=Path(app.instance_path),
    )
    app.extensions[SERVICES_KEY] = services
    return services


def init_oauth(app: Flask, services: Services) -> None:
    app.config["OAUTH2_SCOPES_SUPPORTED"] = list(SUPPORTED_SCOPES)
    server = OAuthServer(services)
    server.init_app(app)
    app.extensions[OAUTH_SERVER_KEY] = server


def register_blueprints(app: Flask) -> None:
    from idp.accounts.views import account, home, own_data, password_change, recovery, registration, signin
    from idp.admin.views import accounts as admin_accounts
    from idp.admin.views import api as admin_api
    from idp.admin.views import audit as admin_audit
    from idp.admin.views import district as admin_district
    from idp.admin.views import emulation as admin_emulation
    from idp.admin.views import signin as admin_signin
    from idp.admin.views import staff as admin_staff
    from idp.oauth.views import bp as oauth
    from idp.students.views import bp as invitations
    from idp.web.health import bp as health
    from idp.web.metrics import bp as metrics

    for blueprint in (
        home.bp,
        signin.bp,
        registration.bp,
        account.bp,
        own_data.bp,
        recovery.bp,
        password_change.bp,
        invitations,
        oauth,
        health,
        metrics,
        admin_signin.bp,
        admin_api.bp,
        admin_audit.bp,
        admin_district.bp,
        admin_emulation.bp,
        admin_accounts.bp,
        admin_staff.bp,
    ):
        app.register_blueprint(blueprint)
