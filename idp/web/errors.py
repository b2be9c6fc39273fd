"""Error pages and JSON errors: every failure a readable 4xx, never a stack trace."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from flask import (
    Flask,
    Response,
    current_app,
    g,
    has_request_context,
    jsonify,
    make_response,
    render_template,
    request,
)
from flask_babel import LazyString, force_locale
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException, TooManyRequests

from idp.accounts.hashing import HashingBusy
from idp.extensions import db
from idp.web.rate_limits import retry_after_seconds

log = logging.getLogger(__name__)

API_PREFIXES = (
    "/token",
    "/userinfo",
    "/jwks.json",
    "/.well-known/",
    "/introspect",
    "/revoke",
    "/healthz",
    "/readyz",
)


# What a client is told to wait when the database is out of reach: PostgreSQL restarting or
# failing over takes seconds.
DATABASE_RETRY_AFTER = 5
# Set on ``g`` when the request's session has committed: the request is no longer only a read.
_COMMITTED = "idp_database_committed"


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HashingBusy, _hashing_busy)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(DBAPIError, _database_error)
    app.register_error_handler(PoolTimeout, _database_unavailable)
    app.register_error_handler(Exception, _unexpected_error)
    _retry_reads_once(app)


def is_database_drop(error: BaseException) -> bool:
    """Whether ``error`` says the database is out of reach for now, rather than a bug.

    A connection that dropped (SQLAlchemy invalidates it: the pool gives the next use a new one),
    an OperationalError (cannot connect, too many clients, SQLite's busy timeout) or a pool with
    no connection free in time.
    """
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or isinstance(error, OperationalError)
    return isinstance(error, PoolTimeout)


def _retry_reads_once(app: Flask) -> None:
    """Run a GET or HEAD once more when its connection dropped before it committed anything.

    Nothing it did was kept (its transaction went with the connection), so a second run is the
    same request again, on a new connection; a request that wrote and committed, or any other
    method, answers 503 instead (``_database_error``). Only the view runs again: the rate limits
    and other ``before_request`` hooks counted the request once already.
    """
    if not event.contains(Session, "after_commit", _note_commit):  # once per process, not per app
        event.listen(Session, "after_commit", _note_commit)
    for endpoint, view in list(app.view_functions.items()):
        app.view_functions[endpoint] = _retried_once(view)


def _note_commit(session: Session) -> None:
    if has_request_context():
        setattr(g, _COMMITTED, True)


def _retried_once(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def retried(*args: Any, **kwargs: Any) -> Any:
        if request.method not in ("GET", "HEAD"):
            return view(*args, **kwargs)
        setattr(g, _COMMITTED, False)
        try:
            return view(*args, **kwargs)
        except DBAPIError as error:
            if not error.connection_invalidated or getattr(g, _COMMITTED):
                raise
            log.warning(
                "database connection dropped during %s %s; running it again", request.method, request.path
            )
            roll_back_after_drop()
            return view(*args, **kwargs)

    return retried


def roll_back_after_drop() -> None:
    """Roll the request's session back; if its connection is gone, let the session go instead."""
    try:
        db.session.rollback()
    except DBAPIError:
        db.session.remove()


def _wants_json() -> bool:
    return request.path.startswith(API_PREFIXES)


# What a person reads on the error page of an authorization request that cannot go back to its
# portal. Authlib's descriptions are English sentences for developers; a client that gets the
# error at its redirect URI or from /token still reads them, in English (RFC 6749 4.1.2.1, 5.2).
AUTHORIZATION_ERRORS = {
    "invalid_client": _l(
        "This sign-in request does not name a portal known to the district. Go back to the portal "
        "and try again, or tell the school."
    ),
    # Without a valid redirect URI there is no page to go back to: the only invalid_request shown here.
    "invalid_request": _l(
        "This sign-in request does not say where to return, or names an address its portal has not "
        "registered. Go back to the portal and try again, or tell the school."
    ),
    "unsupported_response_type": _l(
        "This sign-in request asks for an answer the district's sign-in service does not give. "
        "Tell the school."
    ),
    "unauthorized_client": _l("This portal may not sign people in this way. Tell the school."),
    "invalid_scope": _l("The portal asked for information it may not receive. Tell the school."),
    "access_denied": _l("The sign-in was not allowed."),
}


def authorization_error_message(code: str) -> str:
    """Return the sentence a person reads for the authorization error ``code``, in their language."""
    found = AUTHORIZATION_ERRORS.get(code)
    if found is None:
        found = _l(
            "The portal sent a sign-in request that cannot be used. Go back to the portal and try again."
        )
    return str(found)


def _csrf_error(error: CSRFError) -> Response:
    db.session.rollback()
    message = _l(
        "This form has expired or did not come from this site. Go back, reload the page and try again."
    )
    return _render(400, "invalid_request", message)


def _http_error(error: HTTPException) -> Response:
    db.session.rollback()
    status = error.code or 500
    # Werkzeug's descriptions are English: every page says its own, translated.
    messages = {
        400: _l("The request could not be understood."),
        401: _l("Sign in to see this page."),
        403: _l("You may not see this page."),
        404: _l("This page does not exist."),
        405: _l("This page does not accept that kind of request."),
        410: _l("This page is no longer available."),
        413: _l("The request is too large."),
        414: _l("The address of this page is too long."),
        429: _l("Too many requests. Wait a moment and try again."),
        431: _l("The request is too large."),
    }
    fallback = _l("The request could not be understood.") if status < 500 else _l("Something went wrong.")
    message = messages.get(status, fallback)
    response = _render(status, "invalid_request" if status < 500 else "server_error", message)
    for header in ("Retry-After", "Allow"):
        original = error.get_response().headers.get(header)
        if original:
            response.headers[header] = original
    if isinstance(error, TooManyRequests) and "Retry-After" not in response.headers:
        retry_after = retry_after_seconds(current_app)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
    return response


def _hashing_busy(error: HashingBusy) -> Response:
    # Every argon2 slot of this process is taken (IDP_ARGON2_MAX_CONCURRENT): a quick 503, no queue.
    db.session.rollback()
    response = _render(503, "temporarily_unavailable", _l("The service is busy. Try again in a moment."))
    response.headers["Retry-After"] = str(error.retry_after)
    return response


def _database_error(error: DBAPIError) -> Response:
    if is_database_drop(error):
        return _database_unavailable(error)
    return _unexpected_error(error)


def _database_unavailable(error: Exception) -> Response:
    # A dropped connection or a database out of reach is not the client's fault, nor a bug:
    # 503 with a time to come back (RFC 9110 15.6.4), never a 500.
    roll_back_after_drop()
    log.warning("database unavailable during %s %s: %s", request.method, request.path, error)
    response = _render(503, "temporarily_unavailable", _l("The service is busy. Try again in a moment."))
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER)
    return response


def _unexpected_error(error: Exception) -> Response:
    roll_back_after_drop()
    log.exception("unhandled error", exc_info=error)
    return _render(500, "server_error", _l("Something went wrong. Try again later."))


def _render(status: int, code: str, message: LazyString) -> Response:
    if _wants_json():
        # Read by programs, not people: OAuth error descriptions stay in English (RFC 6749 5.2).
        with force_locale("en"):
            response = jsonify(error=code, error_description=str(message))
        response.status_code = status
        return response
    return make_response(render_template("error.html", message=str(message), error=code), status)
