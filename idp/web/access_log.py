"""One log line per request, with its request id and without the secrets a URL can carry.

The line (``idp.request``, event ``request``) holds ``request_id``, ``method``, ``path``,
``status``, ``duration_ms``, ``client_id`` and ``account_id``. The request id comes from the
``X-Request-ID`` header when it is short and plain, else it is made here; the response returns it,
and every line logged while the request is answered carries it (an audit event's too).

What the path never shows: its query (a callback's code, a logout's ID token, a login hint) and
the secret a path segment may be (a reset, verification or invitation link's token, a pending
authorization request's id). Gunicorn writes no access log of its own (``idp.gunicorn_conf``):
this line replaces it. ``RedactingLogger`` (at the end) is the demo portal's access log, which has
no request log of its own.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import structlog
from flask import Flask, request
from gunicorn.glogging import Logger
from werkzeug.wrappers import Response

from idp.admin.views.common import CONSOLE_KEY
from idp.audit import AuditEvent, request_events
from idp.logs import get_logger
from idp.web import metrics
from idp.web.context import OP_SESSION_KEY

log = get_logger("idp.request")

REQUEST_ID_HEADER = "X-Request-ID"
# A proxy's or load balancer's id is kept when it is this plain: it goes into every line as is.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
REDACTED = "…"
MAX_PATH_LOGGED = 512
MAX_CLIENT_ID_LOGGED = 64
# Route variables whose value is a secret (idp.accounts.views.recovery, .registration,
# idp.students.views, idp.oauth.views).
SECRET_ROUTE_VARIABLES = frozenset({"token", "request_id"})
# The same paths for a request that matched no route (a 404 keeps its secret otherwise).
SECRET_SEGMENT = re.compile(r"(/(?:reset|verify|invitations|authorize/continue)/)[^/?#\s\"]+")
# Audit events naming the account that made the request (others may name the account acted on).
SIGNED_IN_EVENTS = frozenset({"signin.succeeded", "staff.signed_in", "access_token.issued"})

STARTED_KEY = "idp.request_started"
NOTED_KEY = "idp.request_noted"


def init_request_log(app: Flask) -> None:
    """Log every request once; register before any other hook, so that none runs without an id."""
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_forget)


def note_request(*, account_id: str | None = None, client_id: str | None = None) -> None:
    """Name who made this request where the hooks cannot tell (a bearer token's account)."""
    noted: dict[str, str] = request.environ.setdefault(NOTED_KEY, {})
    if account_id:
        noted["account_id"] = account_id
    if client_id:
        noted["client_id"] = client_id


def request_id_from(header: str | None) -> str:
    """The caller's request id if it is sane, else a new one."""
    if header and SANE_REQUEST_ID.fullmatch(header):
        return header
    return secrets.token_hex(16)


def loggable_path(path: str, view_args: dict[str, Any] | None) -> str:
    """``path`` with its secret segments replaced, bounded."""
    for name, value in (view_args or {}).items():
        if name in SECRET_ROUTE_VARIABLES and isinstance(value, str) and value:
            path = path.replace(value, REDACTED)
    path = SECRET_SEGMENT.sub(lambda match: match.group(1) + REDACTED, path)
    return path[:MAX_PATH_LOGGED]


def _start() -> None:
    request.environ[STARTED_KEY] = time.perf_counter()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id_from(request.headers.get(REQUEST_ID_HEADER)))
    request_events.set([])


def _finish(response: Response) -> Response:
    bound = structlog.contextvars.get_contextvars()
    request_id = bound.get("request_id") or request_id_from(request.headers.get(REQUEST_ID_HEADER))
    started = request.environ.get(STARTED_KEY)
    seconds = time.perf_counter() - started if started is not None else 0.0
    events = request_events.get() or []
    response.headers[REQUEST_ID_HEADER] = request_id
    log.info(
        "request",
        request_id=request_id,
        method=request.method,
        path=loggable_path(request.path, request.view_args),
        status=response.status_code,
        duration_ms=round(seconds * 1000, 1),
        client_id=_client_id(events),
        account_id=_account_id(events),
    )
    metrics.observe_request(
        request.endpoint, request.method, response.status_code, seconds, events, _parsed_form()
    )
    return response


def _forget(_error: BaseException | None) -> None:
    structlog.contextvars.clear_contextvars()
    request_events.set(None)


def _parsed_form() -> dict[str, Any]:
    # Only what the view already read: parsing the body here could fail (too large, malformed).
    form = request.__dict__.get("form")
    return dict(form) if form is not None else {}


def _client_id(events: list[AuditEvent]) -> str | None:
    noted = request.environ.get(NOTED_KEY, {}).get("client_id")
    value = noted or request.args.get("client_id") or _parsed_form().get("client_id")
    if not value:
        value = _basic_username()
    if not value:
        value = next((event.client_id for event in events if event.client_id), None)
    if not isinstance(value, str) or not value.isprintable():
        return None
    return value[:MAX_CLIENT_ID_LOGGED]


def _basic_username() -> str | None:
    try:
        credentials = request.authorization
    except ValueError:  # a header that is not base64 of ASCII: the token endpoint refused it already
        return None
    return credentials.username if credentials is not None and credentials.type == "basic" else None


def _account_id(events: list[AuditEvent]) -> str | None:
    noted: str | None = request.environ.get(NOTED_KEY, {}).get("account_id")
    if noted:
        return noted
    # The browser's OP session or console session, if a view looked it up (no extra query for
    # the log's sake).
    op_session = request.environ.get(OP_SESSION_KEY)
    if op_session is not None:
        account_id: str = op_session.account_id
        return account_id
    console = request.environ.get(CONSOLE_KEY)
    if console is not None:
        staff_id: str = console.account.id
        return staff_id
    return next((event.account_id for event in events if event.name in SIGNED_IN_EVENTS), None)


# --- the demo portal's gunicorn access log --------------------------------------------------------
# A portal's callback holds its code in the query, a logout request its ID token: gunicorn would
# write each into every access-log line (the request line, the path, the query, the Referer of the
# next page). ``--logger-class idp.web.access_log.RedactingLogger`` writes them with every query
# value and secret path segment replaced. The provider needs none (``idp.gunicorn_conf``).
QUERY_VALUE = re.compile(r"([?&][^=&#\s\"]*=)[^&#\s\"]*")
# Atoms that hold a URL (request line, path, query, Referer) or a credential.
URL_ATOMS = ("r", "U", "q", "f", "{referer}i")
SECRET_ATOMS = ("{authorization}i", "{cookie}i", "{http_authorization}e", "{http_cookie}e")


def redact_url(text: str) -> str:
    """``text`` with secret path segments and every query value replaced."""
    text = SECRET_SEGMENT.sub(lambda match: match.group(1) + REDACTED, text)
    return QUERY_VALUE.sub(lambda match: match.group(1) + REDACTED, text)


def redact_query(query: str) -> str:
    return redact_url("?" + query)[1:] if query else query


class RedactingLogger(Logger):  # type: ignore[misc]
    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for name in URL_ATOMS:
            value = atoms.get(name)
            if isinstance(value, str):
                atoms[name] = redact_query(value) if name == "q" else redact_url(value)
        for name in SECRET_ATOMS:
            if name in atoms:
                atoms[name] = REDACTED
        return atoms
