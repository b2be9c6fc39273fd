"""The admin JSON API (``/admin/api/v1``): the console's operations for admin API clients.

Each endpoint reads its request, calls the same service the console's page calls, and answers
JSON. Clients authenticate with a client-credentials access token (``Authorization: Bearer``);
what they may do comes from ``AdminClients.actor``. Every error is an RFC 9457 problem details
document, including those of routing (404, 405) under ``/admin/api/``. No cookie is read, so no
CSRF token is asked for.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from idp.accounts.administration import TemporaryPasswordRefused
from idp.accounts.models import AccountType
from idp.admin.accounts import (
    AccountView,
    InvalidReason,
    NotPending,
    TooManyStudents,
    UnchangeableType,
)
from idp.admin.actor import Actor, NotPermitted, OutOfReach
from idp.admin.audit_trail import AuditFilters, BadFilter, Cursor
from idp.admin.openapi import PROBLEM_TYPES, openapi_document
from idp.admin.search import AccountRow, BadCursor, BadLimit, QueryTooLong, UnknownFilter
from idp.admin.students import StudentProfile
from idp.extensions import csrf
from idp.oauth.access import AccessTokenRejected
from idp.oauth.scopes import ADMIN_API_PATH
from idp.students.relationships import UnknownRelationship
from idp.web.context import services
from idp.web.errors import DATABASE_RETRY_AFTER, is_database_drop, roll_back_after_drop

bp = Blueprint("admin_api", __name__, url_prefix=ADMIN_API_PATH)
# Bearer tokens only, never a cookie: nothing a browser sends by itself is trusted here.
csrf.exempt(bp)

PROBLEM_JSON = "application/problem+json"
ACTOR_KEY = "admin_api_actor"
# A request body holds a few short fields; anything longer is not one of ours.
MAX_BODY_BYTES = 16 * 1024
MAX_QUERY_LENGTH = 200
DEFAULT_LIMIT = 50
MAX_LIMIT = 100


class Problem(Exception):
    """An RFC 9457 problem this API answers; ``kind`` is a key of ``PROBLEM_TYPES``."""

    def __init__(
        self,
        kind: str,
        detail: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.field = field
        self.headers = dict(headers or {})


def problem_response(problem: Problem) -> Response:
    """Return ``problem`` as ``application/problem+json``."""
    kind = PROBLEM_TYPES[problem.kind]
    body: dict[str, Any] = {
        "type": kind.uri(services().issuer),
        "title": kind.title,
        "status": kind.status,
        "detail": problem.detail,
    }
    if problem.field is not None:
        body["field"] = problem.field
    response = current_app.response_class(json.dumps(body), status=kind.status, mimetype=PROBLEM_JSON)
    response.headers.update(problem.headers)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(Problem)
def _problem(problem: Problem) -> Response:
    services().session.rollback()
    return problem_response(problem)


@bp.errorhandler(HTTPException)
def _http_problem(error: HTTPException) -> Response:
    services().session.rollback()
    return problem_response(_routing_problem(error))


@bp.errorhandler(Exception)
def _unexpected(error: Exception) -> Response:
    if is_database_drop(error):
        # Out of reach for now, not a bug: 503 with a time to come back, as on the other pages.
        roll_back_after_drop()
        problem = Problem(
            "unavailable",
            "The database is out of reach for now; the change was not made.",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
        )
        return problem_response(problem)
    services().session.rollback()
    current_app.logger.exception("unhandled error in the admin API", exc_info=error)
    return problem_response(Problem("server_error", "Something went wrong; the change was not made."))


@bp.before_app_request
def _routing_errors() -> Response | None:
    """Answer a URL or method the API does not have with a problem, not the site's error page."""
    error = request.routing_exception
    if error is None or not request.path.startswith(ADMIN_API_PATH + "/"):
        return None
    assert isinstance(error, HTTPException)
    return problem_response(_routing_problem(error))


def _routing_problem(error: HTTPException) -> Problem:
    if isinstance(error, MethodNotAllowed):
        allowed = ", ".join(sorted(error.valid_methods or ()))
        return Problem(
            "method_not_allowed", "This URL does not accept this method.", headers={"Allow": allowed}
        )
    if error.code == 404:
        return Problem("not_found", "There is no such resource.")
    if error.code == 413:
        return Problem("too_large", "The request is too large.")
    return Problem("invalid_request", "The request could not be understood.")


@bp.before_request
def _authenticate() -> None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    try:
        # On the request, not on ``g``: an app context may outlive one request (tests keep one).
        request.environ[ACTOR_KEY] = (
            services().admin_clients().actor(request.headers.get("Authorization", ""))
        )
    except AccessTokenRejected as rejected:
        # RFC 6750 3.1: a request without a token gets a bare challenge; a bad token, invalid_token.
        challenge = 'Bearer realm="admin-api"'
        if rejected.error != "invalid_request":
            challenge += f', error="invalid_token", error_description="{rejected.description}"'
        services().session.rollback()
        raise Problem("unauthorized", rejected.description, headers={"WWW-Authenticate": challenge}) from None


def _actor() -> Actor:
    actor: Actor = request.environ[ACTOR_KEY]
    return actor


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of this API."""
    response = jsonify(openapi_document(services().issuer))
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.get("/problems/<slug>")
def problem_type(slug: str) -> Response:
    """What a problem ``type`` names (RFC 9457 3.1.1: the URI may be dereferenced)."""
    kind = PROBLEM_TYPES.get(slug.replace("-", "_"))
    if kind is None or kind.slug != slug:
        raise Problem("not_found", "There is no such problem type.")
    return jsonify(type=kind.uri(services().issuer), title=kind.title, status=kind.status)


PUBLIC_ENDPOINTS = ("admin_api.openapi", "admin_api.problem_type")


# --- the domain's outcomes, as problems -------------------------------------------------------
def _outcome(action: Callable[[], Any]) -> Any:
    """Run one service call; its refusals become problems."""
    try:
        return action()
    except NotPermitted as refused:
        # RFC 6750 3.1: the token is good, its scope is not enough (admin:read asked to write).
        raise Problem(
            "insufficient_scope",
            f"The token's scope does not allow this ({refused.permission.value}).",
            headers={"WWW-Authenticate": 'Bearer realm="admin-api", error="insufficient_scope"'},
        ) from None
    except OutOfReach:
        # Another school's account is answered exactly like one that does not exist.
        raise Problem("not_found", "There is no such resource.") from None
    except InvalidReason:
        raise Problem(
            "invalid_field", "The reason must be 1 to 200 printable characters.", field="reason"
        ) from None
    except UnknownRelationship:
        raise Problem(
            "invalid_field", "The relationship is not one of the district's.", field="relationship"
        ) from None
    except UnchangeableType:
        raise Problem(
            "invalid_field", "Only parent and student accounts change type.", field="type"
        ) from None
    except NotPending:
        raise Problem("conflict", "Verification mail is sent to pending accounts only.") from None
    except TooManyStudents as too_many:
        raise Problem(
            "conflict", f"A student account links one student; this one links {too_many.count}."
        ) from None
    except TemporaryPasswordRefused:
        raise Problem("conflict", "No temporary password passes this account's password policy.") from None
    except QueryTooLong:
        raise Problem("invalid_request", "The search text is too long.", field="q") from None
    except UnknownFilter as unknown:
        field = "type" if unknown.name == "account type" else "status"
        raise Problem(
            "invalid_request", f"The {field} must be one of: {', '.join(unknown.allowed)}.", field=field
        ) from None
    except BadCursor:
        raise Problem("invalid_request", "The cursor is not one this search gave.", field="cursor") from None
    except BadLimit:
        raise Problem("invalid_request", "The limit is out of range.", field="limit") from None
    except BadFilter as bad:
        raise Problem(
            "invalid_request", f"The {bad.field} parameter is not valid.", field=bad.field
        ) from None


# --- reading requests -------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    check: Callable[[Any], Any]
    required: bool = True


def _body(fields: Mapping[str, Field]) -> dict[str, Any]:
    """Return the request's JSON object, each field checked; an empty body is an empty object."""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise Problem("too_large", "The request body is too large.")
    raw = request.get_data(cache=True)
    if len(raw) > MAX_BODY_BYTES:
        raise Problem("too_large", "The request body is too large.")
    if not raw:
        data: Any = {}
    else:
        if request.mimetype != "application/json":
            raise Problem("unsupported_media_type", "Send the request body as application/json.")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            # ValueError: not JSON, or not UTF-8 (UnicodeDecodeError is one).
            raise Problem("invalid_request", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise Problem("invalid_request", "The request body must be a JSON object.")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise Problem("invalid_field", f"Unknown field: {unknown[0][:50]}.", field=unknown[0][:50])
    checked: dict[str, Any] = {}
    for name, spec in fields.items():
        if name not in data:
            if spec.required:
                raise Problem("invalid_field", f"The field {name} is required.", field=name)
            continue
        try:
            checked[name] = spec.check(data[name])
        except (TypeError, ValueError, OverflowError) as error:
            raise Problem("invalid_field", f"The field {name} {error}.", field=name) from None
    return checked


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("must be a string")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("must be true or false")
    return value


def _account_type(value: Any) -> AccountType:
    if value not in (AccountType.PARENT.value, AccountType.STUDENT.value):
        raise ValueError("must be parent or student")
    return AccountType(value)


def _instant_or_none(value: Any) -> datetime | None:
    """An RFC 3339 date-time with its offset, or null."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise TypeError("must be an RFC 3339 date-time or null")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an RFC 3339 date-time or null") from None
    if moment.tzinfo is None or "T" not in value.upper():
        raise ValueError("must be an RFC 3339 date-time with its offset")
    return moment.astimezone(UTC)


def _query(name: str) -> str | None:
    value = request.args.get(name)
    if value is not None and len(value) > MAX_QUERY_LENGTH:
        raise Problem("invalid_request", f"The {name} parameter is too long.", field=name)
    return value


def _limit() -> int:
    raw = _query("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise Problem(
            "invalid_request", f"The limit must be a whole number from 1 to {MAX_LIMIT}.", field="limit"
        )
    return int(raw)


def _day(name: str) -> date | None:
    """A ``YYYY-MM-DD`` day of the district's calendar, or None."""
    raw = _query(name)
    if not raw:
        return None
    try:
        # fromisoformat also reads "20240101" and week dates; the document promises YYYY-MM-DD.
        if len(raw) == 10 and raw[4] == "-":
            return date.fromisoformat(raw)
    except ValueError:
        pass
    raise Problem("invalid_request", f"The {name} parameter must be a date (YYYY-MM-DD).", field=name)


# --- presenting -------------------------------------------------------------------------------
def instant(moment: datetime | None) -> str | None:
    """Return ``moment`` as RFC 3339 in UTC (``…Z``), or None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def account_json(view: AccountView) -> dict[str, Any]:
    return {
        "id": view.id,
        "type": view.type.value,
        "status": view.state.value,
        "username": view.username,
        "email": view.email,
        "first_name": view.first_name,
        "last_name": view.last_name,
        "email_verified_at": instant(view.email_verified_at),
        "created_at": instant(view.created_at),
        "expires_at": instant(view.expires_at),
        "disabled_reason": view.disabled_reason,
        "is_test": view.is_test_account,
        "must_change_password": view.must_change_password,
        "login_count": view.login_count,
        "last_login_at": instant(view.last_login_at),
        "last_login_ip": view.last_login_ip,
        "students": [
            {
                "sis_id": s.sis_id,
                "first_name": s.first_name,
                "last_name": s.last_name,
                "grade": s.grade,
                "school_code": s.school_code,
                "school_name": s.school_name,
                "relationship": s.relationship,
                "is_primary": s.is_primary,
            }
            for s in view.students
        ],
        "signins": [
            {
                "at": instant(r.at),
                "outcome": r.outcome,
                "reason": r.reason,
                "ip_address": r.ip_address,
                "client_id": r.client_id,
            }
            for r in view.signins
        ],
        "sessions": [
            {
                "id": s.id,
                "created_at": instant(s.created_at),
                "last_seen_at": instant(s.last_seen_at),
                "ip_address": s.ip_address,
                "user_agent": s.user_agent,
                "client_ids": list(s.client_ids),
                "emulated": s.emulated_by is not None,
            }
            for s in view.sessions
        ],
        "grants": [
            {
                "id": grant.family_id,
                "client_id": grant.client_id,
                "client_name": grant.client_name,
                "scope": grant.scope,
                "created_at": instant(grant.created_at),
                "expires_at": instant(grant.expires_at),
            }
            for grant in view.grants
        ],
    }


def account_row_json(row: AccountRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type.value,
        "status": row.state.value,
        "username": row.username,
        "email": row.email,
        "first_name": row.first_name,
        "last_name": row.last_name,
        "is_test": row.is_test,
        "locked": row.locked,
        "last_login_at": instant(row.last_login_at),
        "last_login_ip": row.last_login_ip,
        "students": [
            {
                "sis_id": s.sis_id,
                "first_name": s.first_name,
                "last_name": s.last_name,
                "relationship": s.relationship,
            }
            for s in row.students
        ],
    }


def student_json(profile: StudentProfile) -> dict[str, Any]:
    return {
        "sis_id": profile.sis_id,
        "first_name": profile.first_name,
        "last_name": profile.last_name,
        "grade": profile.grade,
        "school_code": profile.school_code,
        "school_name": profile.school_name,
        "active": profile.active,
        "accounts": [
            {
                "id": a.id,
                "type": a.type.value,
                "status": a.state.value,
                "username": a.username,
                "email": a.email,
                "first_name": a.first_name,
                "last_name": a.last_name,
                "relationship": a.relationship,
                "last_login_at": instant(a.last_login_at),
            }
            for a in profile.accounts
        ],
    }


def private(payload: dict[str, Any]) -> Response:
    """Return ``payload`` as JSON that no cache keeps: it is about people, or a secret."""
    response = jsonify(payload)
    response.headers["Cache-Control"] = "no-store"
    return response


def _account(account_id: str) -> Response:
    actor = _actor()
    view = _outcome(lambda: services().staff_accounts().account(actor, account_id))
    return private(account_json(view))


# --- accounts ---------------------------------------------------------------------------------
@bp.get("/v1/accounts")
def accounts() -> Response:
    actor = _actor()
    q, account_type, status, cursor = (_query(name) for name in ("q", "type", "status", "cursor"))
    limit = _limit()
    page = _outcome(
        lambda: (
            services()
            .account_search()
            .search(actor, q=q or "", account_type=account_type, status=status, cursor=cursor, limit=limit)
        )
    )
    services().session.commit()
    return private({"items": [account_row_json(row) for row in page.rows], "next_cursor": page.next_cursor})


@bp.get("/v1/accounts/<account_id>")
def account(account_id: str) -> Response:
    return _account(account_id)


@bp.post("/v1/accounts/<account_id>/disable")
def disable(account_id: str) -> Response:
    reason = _body({"reason": Field(_string)})["reason"]
    _outcome(lambda: services().staff_accounts().disable(_actor(), account_id, reason))
    return _account(account_id)


@bp.post("/v1/accounts/<account_id>/enable")
def enable(account_id: str) -> Response:
    _body({})
    _outcome(lambda: services().staff_accounts().enable(_actor(), account_id))
    return _account(account_id)


@bp.post("/v1/accounts/<account_id>/unlock")
def unlock(account_id: str) -> Response:
    _body({})
    _outcome(lambda: services().staff_accounts().unlock(_actor(), account_id))
    return _account(account_id)


@bp.post("/v1/accounts/<account_id>/resend-verification")
def resend_verification(account_id: str) -> Response:
    _body({})
    _outcome(lambda: services().staff_accounts().resend_verification(_actor(), account_id))
    return _account(account_id)


@bp.post("/v1/accounts/<account_id>/temporary-password")
def temporary_password(account_id: str) -> Response:
    _body({})
    issued = _outcome(lambda: services().staff_accounts().set_temporary_password(_actor(), account_id))
    # Shown once: never stored in the clear, never cached.
    return private(
        {
            "password": issued.password,
            "expires_at": instant(issued.expires_at),
            "ended_sessions": issued.ended_sessions,
        }
    )


@bp.post("/v1/accounts/<account_id>/expiry")
def expiry(account_id: str) -> Response:
    at = _body({"expires_at": Field(_instant_or_none)})["expires_at"]
    _outcome(lambda: services().staff_accounts().set_expiry(_actor(), account_id, at))
    return _account(account_id)


@bp.post("/v1/accounts/<account_id>/type")
def change_type(account_id: str) -> Response:
    body = _body({"type": Field(_account_type), "relationship": Field(_string, required=False)})
    extra = {"relationship": body["relationship"]} if "relationship" in body else {}
    _outcome(lambda: services().staff_accounts().change_type(_actor(), account_id, body["type"], **extra))
    return _account(account_id)


@bp.post("/v1/accounts/<account_id>/test")
def test_mark(account_id: str) -> Response:
    is_test = _body({"is_test": Field(_boolean)})["is_test"]
    _outcome(lambda: services().staff_accounts().mark_test(_actor(), account_id, is_test))
    return _account(account_id)


@bp.delete("/v1/accounts/<account_id>")
def delete(account_id: str) -> Response:
    body = _body({"reason": Field(_string, required=False)})
    reason = body.get("reason", _query("reason"))
    if reason is None:
        raise Problem("invalid_field", "A reason is required, in the body or as ?reason=.", field="reason")
    deleted = _outcome(lambda: services().staff_accounts().delete_account(_actor(), account_id, reason))
    return private(
        {
            "account_id": deleted.account_id,
            "ended_sessions": deleted.ended_sessions,
            "revoked_grants": deleted.revoked_grants,
            "unlinked_students": deleted.unlinked_students,
            "notified": deleted.notified,
        }
    )


@bp.delete("/v1/accounts/<account_id>/students/<sis_id>")
def unlink(account_id: str, sis_id: str) -> Response:
    _body({})
    _outcome(lambda: services().staff_accounts().unlink_student(_actor(), account_id, sis_id))
    # No body: the account may be out of this client's reach now (its last student there removed).
    return Response(status=204)


# --- students ---------------------------------------------------------------------------------
@bp.get("/v1/students/<sis_id>")
def student(sis_id: str) -> Response:
    actor = _actor()
    profile = _outcome(lambda: services().student_profiles().student_profile(actor, sis_id))
    return private(student_json(profile))


# --- the audit trail --------------------------------------------------------------------------
@bp.get("/v1/audit")
def audit_trail() -> Response:
    actor = _actor()
    trail = services().audit_trail()

    def read() -> Any:
        filters = AuditFilters.parse(
            actor=_query("actor"),
            account_id=_query("account"),
            event=_query("event"),
            since=_day("since"),
            until=_day("until"),
            zone=trail.zone,
        )
        cursor = _query("cursor")
        after = Cursor.decode(cursor) if cursor else None
        return trail.page(actor, filters, after=after, limit=_limit())

    page = _outcome(read)
    items = [
        {
            "id": event.id,
            "event": event.name,
            "occurred_at": instant(event.occurred_at),
            "account_id": event.account_id,
            "actor": event.details.get("actor") if isinstance(event.details.get("actor"), str) else None,
            "client_id": event.client_id,
            "ip_address": event.ip_address,
            "details": event.details,
        }
        for event in page.events
    ]
    services().session.commit()
    next_cursor = page.next_cursor.encode() if page.next_cursor else None
    return private({"items": items, "next_cursor": next_cursor})
