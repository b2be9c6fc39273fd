"""The admin API's OpenAPI 3.1 document, written by hand to say exactly what the views answer.

``idp.admin.views.api`` serves it at ``/admin/api/openapi.json``; the schemathesis test holds the
two together (every response must match it). Problem types (RFC 9457) are listed here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from idp.accounts.administration import MAX_REASON_LENGTH
from idp.oauth.scopes import ADMIN_SCOPES

API_VERSION = "1.0.0"


@dataclass(frozen=True)
class ProblemType:
    slug: str
    status: int
    title: str

    def uri(self, issuer: str) -> str:
        """Return the problem's ``type``: a URI under the API that names it (RFC 9457 3.1.1)."""
        return f"{issuer}/admin/api/problems/{self.slug}"


PROBLEM_TYPES: dict[str, ProblemType] = {
    kind.slug.replace("-", "_"): kind
    for kind in (
        ProblemType("invalid-request", 400, "Bad request"),
        ProblemType("unauthorized", 401, "Unauthorized"),
        ProblemType("insufficient-scope", 403, "Insufficient scope"),
        ProblemType("not-found", 404, "Not found"),
        ProblemType("method-not-allowed", 405, "Method not allowed"),
        ProblemType("conflict", 409, "Conflict"),
        ProblemType("too-large", 413, "Request too large"),
        ProblemType("unsupported-media-type", 415, "Unsupported media type"),
        ProblemType("invalid-field", 422, "Invalid field"),
        ProblemType("server-error", 500, "Internal server error"),
        ProblemType("unavailable", 503, "Service unavailable"),
    )
}

NULLABLE_STRING = {"type": ["string", "null"]}
NULLABLE_INSTANT = {"type": ["string", "null"], "format": "date-time"}
INSTANT = {"type": "string", "format": "date-time"}
ACCOUNT_TYPE = {"type": "string", "enum": ["parent", "student"]}
STATUSES = ["active", "pending", "locked", "expired", "disabled", "test"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
    }


SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "field": {"type": "string", "description": "The parameter or body field at fault."},
        },
        "required": ["type", "title", "status", "detail"],
    },
    "LinkedStudent": _object(
        {
            "sis_id": {"type": "string"},
            "first_name": {"type": "string"},
            "last_name": {"type": "string"},
            "grade": NULLABLE_STRING,
            "school_code": {"type": "string"},
            "school_name": {"type": "string"},
            "relationship": {"type": "string"},
            "is_primary": {"type": "boolean"},
        }
    ),
    "SignIn": _object(
        {
            "at": INSTANT,
            "outcome": {"type": "string"},
            "reason": NULLABLE_STRING,
            "ip_address": NULLABLE_STRING,
            "client_id": NULLABLE_STRING,
        }
    ),
    "Session": _object(
        {
            "id": {"type": "string"},
            "created_at": INSTANT,
            "last_seen_at": INSTANT,
            "ip_address": NULLABLE_STRING,
            "user_agent": NULLABLE_STRING,
            "client_ids": {"type": "array", "items": {"type": "string"}},
            "emulated": {"type": "boolean", "description": "Held by a staff member emulating the account."},
        }
    ),
    "Grant": _object(
        {
            "id": {"type": "string"},
            "client_id": {"type": "string"},
            "client_name": {"type": "string"},
            "scope": {"type": "string"},
            "created_at": INSTANT,
            "expires_at": INSTANT,
        }
    ),
    "Account": _object(
        {
            "id": {"type": "string"},
            "type": ACCOUNT_TYPE,
            "status": {"type": "string", "enum": STATUSES},
            "username": {"type": "string"},
            "email": {"type": "string"},
            "first_name": {"type": "string"},
            "last_name": {"type": "string"},
            "email_verified_at": NULLABLE_INSTANT,
            "created_at": INSTANT,
            "expires_at": NULLABLE_INSTANT,
            "disabled_reason": NULLABLE_STRING,
            "is_test": {"type": "boolean"},
            "must_change_password": {"type": "boolean"},
            "login_count": {"type": "integer", "minimum": 0},
            "last_login_at": NULLABLE_INSTANT,
            "last_login_ip": NULLABLE_STRING,
            "students": {"type": "array", "items": _ref("LinkedStudent")},
            "signins": {"type": "array", "items": _ref("SignIn"), "description": "Newest first."},
            "sessions": {"type": "array", "items": _ref("Session"), "description": "Live sessions."},
            "grants": {"type": "array", "items": _ref("Grant"), "description": "Live token families."},
        }
    ),
    "AccountRow": _object(
        {
            "id": {"type": "string"},
            "type": ACCOUNT_TYPE,
            "status": {"type": "string", "enum": [s for s in STATUSES if s != "test"]},
            "username": {"type": "string"},
            "email": {"type": "string"},
            "first_name": {"type": "string"},
            "last_name": {"type": "string"},
            "is_test": {"type": "boolean"},
            "locked": {"type": "boolean"},
            "last_login_at": NULLABLE_INSTANT,
            "last_login_ip": NULLABLE_STRING,
            "students": {
                "type": "array",
                "items": _object(
                    {
                        "sis_id": {"type": "string"},
                        "first_name": {"type": "string"},
                        "last_name": {"type": "string"},
                        "relationship": {"type": "string"},
                    }
                ),
            },
        }
    ),
    "AccountPage": _object(
        {
            "items": {"type": "array", "items": _ref("AccountRow")},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Pass as `cursor` for the next page; null on the last page.",
            },
        }
    ),
    "Student": _object(
        {
            "sis_id": {"type": "string"},
            "first_name": {"type": "string"},
            "last_name": {"type": "string"},
            "grade": NULLABLE_STRING,
            "school_code": {"type": "string"},
            "school_name": {"type": "string"},
            "active": {"type": "boolean"},
            "accounts": {
                "type": "array",
                "items": _object(
                    {
                        "id": {"type": "string"},
                        "type": {"type": "string", "enum": ["parent", "student", "staff"]},
                        "status": {"type": "string", "enum": STATUSES},
                        "username": {"type": "string"},
                        "email": {"type": "string"},
                        "first_name": {"type": "string"},
                        "last_name": {"type": "string"},
                        "relationship": {"type": "string"},
                        "last_login_at": NULLABLE_INSTANT,
                    }
                ),
            },
        }
    ),
    "AuditEvent": _object(
        {
            "id": {"type": "string"},
            "event": {"type": "string", "description": "noun.past_verb, e.g. account.disabled"},
            "occurred_at": INSTANT,
            "account_id": NULLABLE_STRING,
            "actor": {"type": ["string", "null"], "description": "staff:<id>, client:<client_id>, cli:…"},
            "client_id": NULLABLE_STRING,
            "ip_address": NULLABLE_STRING,
            "details": {"type": "object"},
        }
    ),
    "AuditPage": _object(
        {
            "items": {"type": "array", "items": _ref("AuditEvent")},
            "next_cursor": {"type": ["string", "null"]},
        }
    ),
    "TemporaryPassword": _object(
        {
            "password": {"type": "string", "description": "Shown once; never stored in the clear."},
            "expires_at": INSTANT,
            "ended_sessions": {"type": "integer", "minimum": 0},
        }
    ),
    "Deleted": _object(
        {
            "account_id": {"type": "string"},
            "ended_sessions": {"type": "integer", "minimum": 0},
            "revoked_grants": {"type": "integer", "minimum": 0},
            "unlinked_students": {"type": "integer", "minimum": 0},
            "notified": {"type": "boolean", "description": "Whether the holder was mailed."},
        }
    ),
}

REASON = {"type": "string", "minLength": 1, "maxLength": MAX_REASON_LENGTH}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }


def _challenged(description: str) -> dict[str, Any]:
    return {
        **_problem(description),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
    }


PROBLEMS: dict[str, Any] = {
    "BadRequest": _problem("A parameter or the body cannot be read."),
    "Unauthorized": _challenged("No access token, or one that is not valid (RFC 6750)."),
    "Forbidden": _challenged("The token's scope does not allow this (admin:read asked to change)."),
    "NotFound": _problem("No such resource, or one outside the client's schools."),
    "Conflict": _problem("The account is not in a state that allows this."),
    "TooLarge": _problem("The request body is too large."),
    "UnsupportedMediaType": _problem("The body is not application/json."),
    "Unprocessable": _problem("A body field is missing, unknown, or has a value that is not allowed."),
    "Unavailable": {
        **_problem("The database is out of reach for now; nothing was changed. Try again after Retry-After."),
        "headers": {"Retry-After": {"schema": {"type": "string"}, "required": True}},
    },
}


def _responses(ok: dict[str, Any], *problems: str) -> dict[str, Any]:
    codes = {
        "BadRequest": "400",
        "Unauthorized": "401",
        "Forbidden": "403",
        "NotFound": "404",
        "Conflict": "409",
        "TooLarge": "413",
        "UnsupportedMediaType": "415",
        "Unprocessable": "422",
        "Unavailable": "503",
    }
    found = {"200": ok}
    for name in ("Unauthorized", "Forbidden", *problems, "Unavailable"):
        found[codes[name]] = {"$ref": f"#/components/responses/{name}"}
    return found


def _json(schema_name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema_name)}}}


ACCOUNT_OK = _json("Account", "The account, after the change.")
BODY_PROBLEMS = ("BadRequest", "NotFound", "TooLarge", "UnsupportedMediaType", "Unprocessable")


def _body(properties: dict[str, Any], *, required: tuple[str, ...]) -> dict[str, Any]:
    return {
        "required": bool(required),
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": properties,
                    "required": list(required),
                    "additionalProperties": False,
                }
            }
        },
    }


def _action(summary: str, *, body: dict[str, Any] | None = None, conflict: bool = False) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"oauth2": ["admin:write"]}],
        "parameters": [{"$ref": "#/components/parameters/AccountId"}],
        "responses": _responses(ACCOUNT_OK, *BODY_PROBLEMS, *(("Conflict",) if conflict else ())),
    }
    if body is not None:
        operation["requestBody"] = body
    return operation


READ = [{"oauth2": ["admin:read"]}, {"oauth2": ["admin:write"]}]


def _query(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", **schema},
    }


CURSOR = _query("cursor", "The `next_cursor` of the previous page.", maxLength=200)
LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "description": "Items per page (default 50).",
    "schema": {"type": "integer", "minimum": 1, "maximum": 100},
}


def _paths() -> dict[str, Any]:
    return {
        "/accounts": {
            "get": {
                "summary": "Find parent and student accounts",
                "description": "By email, username, name or student ID number, ordered by last "
                "name and first name, a page at a time (cursor).",
                "security": READ,
                "parameters": [
                    _query("q", "Email, username, name or student ID number.", maxLength=200),
                    _query("type", "Account type.", enum=["parent", "student"]),
                    _query("status", "Account status.", enum=STATUSES),
                    CURSOR,
                    LIMIT,
                ],
                "responses": _responses(_json("AccountPage", "One page of accounts."), "BadRequest"),
            }
        },
        "/accounts/{account_id}": {
            "parameters": [{"$ref": "#/components/parameters/AccountId"}],
            "get": {
                "summary": "Read an account",
                "security": READ,
                "responses": _responses(_json("Account", "The account."), "NotFound"),
            },
            "delete": {
                "summary": "Delete an account",
                "description": "Mails the holder, ends its sessions (back-channel logout), revokes its "
                "tokens and leaves an audit tombstone. The reason comes in the body or as `?reason=`.",
                "security": [{"oauth2": ["admin:write"]}],
                "parameters": [_query("reason", "Why (when the body gives none).", maxLength=200)],
                "requestBody": _body({"reason": REASON}, required=()),
                "responses": _responses(_json("Deleted", "What went with the account."), *BODY_PROBLEMS),
            },
        },
        "/accounts/{account_id}/disable": {
            "post": _action(
                "Disable an account (signs it out everywhere)",
                body=_body({"reason": REASON}, required=("reason",)),
            )
        },
        "/accounts/{account_id}/enable": {"post": _action("Enable a disabled account")},
        "/accounts/{account_id}/unlock": {"post": _action("Lift a sign-in lockout")},
        "/accounts/{account_id}/resend-verification": {
            "post": _action("Resend the verification email (pending accounts only)", conflict=True)
        },
        "/accounts/{account_id}/temporary-password": {
            "post": {
                **_action("Set a generated temporary password, returned once", conflict=True),
                "responses": _responses(
                    _json("TemporaryPassword", "The password: shown this once."),
                    *BODY_PROBLEMS,
                    "Conflict",
                ),
            }
        },
        "/accounts/{account_id}/expiry": {
            "post": _action(
                "Set or clear the expiry date",
                body=_body({"expires_at": {**NULLABLE_INSTANT, "maxLength": 40}}, required=("expires_at",)),
            )
        },
        "/accounts/{account_id}/type": {
            "post": _action(
                "Change the account type (parent <-> student)",
                body=_body(
                    {
                        "type": ACCOUNT_TYPE,
                        "relationship": {
                            "type": "string",
                            "maxLength": 32,
                            "description": "Of a student account's links when it becomes a parent's "
                            "(default Guardian).",
                        },
                    },
                    required=("type",),
                ),
                conflict=True,
            )
        },
        "/accounts/{account_id}/test": {
            "post": _action(
                "Mark or unmark a test account",
                body=_body({"is_test": {"type": "boolean"}}, required=("is_test",)),
            )
        },
        "/accounts/{account_id}/students/{sis_id}": {
            "delete": {
                "summary": "Remove a student from the account (mails the account)",
                "security": [{"oauth2": ["admin:write"]}],
                "parameters": [
                    {"$ref": "#/components/parameters/AccountId"},
                    {"$ref": "#/components/parameters/SisId"},
                ],
                "responses": {
                    "204": {"description": "Removed (the account may now be out of the client's reach)."},
                    **{k: v for k, v in _responses({}, *BODY_PROBLEMS).items() if k != "200"},
                },
            }
        },
        "/students/{sis_id}": {
            "get": {
                "summary": "Read a student and the accounts linked to it",
                "security": READ,
                "parameters": [{"$ref": "#/components/parameters/SisId"}],
                "responses": _responses(_json("Student", "The student."), "NotFound"),
            }
        },
        "/audit": {
            "get": {
                "summary": "Read the audit trail, newest first",
                "security": READ,
                "parameters": [
                    _query("actor", "Who acted: staff:<id>, client:<client_id>, cli:…", maxLength=100),
                    _query("account", "The account id.", maxLength=32),
                    _query("event", "An event name, or a noun and a dot (account.).", maxLength=64),
                    _query("since", "From this day (district time), inclusive.", format="date"),
                    _query("until", "To this day (district time), inclusive.", format="date"),
                    CURSOR,
                    LIMIT,
                ],
                "responses": _responses(_json("AuditPage", "One page of events."), "BadRequest"),
            }
        },
    }


def openapi_document(issuer: str) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the admin API served by ``issuer``."""
    scopes = {
        "admin:read": "Search and read accounts, students and the audit trail.",
        "admin:write": "Everything admin:read does, and every account action.",
    }
    assert tuple(scopes) == ADMIN_SCOPES
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "School identity provider: admin API",
            "version": API_VERSION,
            "description": "The district console's account operations as JSON. Errors are RFC 9457 "
            "problem details. A client registered with `--school` reaches only those schools' "
            "accounts; any other is answered 404, like one that does not exist.",
        },
        "servers": [{"url": f"{issuer}/admin/api/v1"}],
        "security": READ,
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "responses": PROBLEMS,
            "parameters": {
                "AccountId": {
                    "name": "account_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                },
                "SisId": {
                    "name": "sis_id",
                    "in": "path",
                    "required": True,
                    "description": "The student's school-system id (student ID number).",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                },
            },
            "securitySchemes": {
                "oauth2": {
                    "type": "oauth2",
                    "description": "Client credentials of a client registered with "
                    "`idp clients create --admin-scope …`.",
                    "flows": {"clientCredentials": {"tokenUrl": f"{issuer}/token", "scopes": scopes}},
                }
            },
        },
    }
