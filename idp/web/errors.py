"""Error pages and JSON errors: every failure a readable 4xx, never a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, jsonify, make_response, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError, TooManyRequests

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


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HashingBusy, _hashing_busy)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)


def _wants_json() -> bool:
    return request.path.startswith(API_PREFIXES)


def _csrf_error(error: CSRFError) -> Response:
    db.session.rollback()
    message = _(
        "This form has expired or did not come from this site. Go back, reload the page and try again."
    )
    return _render(400, "invalid_request", message)


def _http_error(error: HTTPException) -> Response:
    db.session.rollback()
    status = error.code or 500
    messages = {
        400: _("The request could not be understood."),
        404: _("This page does not exist."),
        405: _("This page does not accept that kind of request."),
        413: _("The request is too large."),
        429: _("Too many requests. Wait a moment and try again."),
    }
    message = messages.get(status, error.description or _("Something went wrong."))
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
    response = _render(503, "temporarily_unavailable", _("The service is busy. Try again in a moment."))
    response.headers["Retry-After"] = str(error.retry_after)
    return response


def _unexpected_error(error: Exception) -> Response:
    db.session.rollback()
    log.exception("unhandled error", exc_info=error)
    return _render(500, "server_error", InternalServerError.description or "")


def _render(status: int, code: str, message: str) -> Response:
    if _wants_json():
        response = jsonify(error=code, error_description=message)
        response.status_code = status
        return response
    return make_response(render_template("error.html", message=message, error=code), status)
