"""Console pages: the audit trail, filtered and paged, and its CSV export. Read-only: there are
no routes that change or delete an event."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from flask import Blueprint, make_response, render_template, request, stream_with_context, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp.admin.audit_trail import PAGE_SIZE, AuditFilters, AuditTrail, BadFilter, Cursor
from idp.admin.roles import Permission
from idp.admin.views.common import current_actor, staff_page
from idp.web.context import services

bp = Blueprint("admin_audit", __name__, url_prefix="/admin")

FILTER_PARAMETERS = ("actor", "account", "event", "since", "until")
# Longer query values are refused before parsing (a date is 10 characters, the rest far less).
MAX_PARAMETER_LENGTH = 200


class BadDate(ValueError):
    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


@bp.get("/audit")
@staff_page(Permission.AUDIT_TRAIL)
def audit() -> Response:
    trail = services().audit_trail()
    values = _raw_filters()
    try:
        filters = _filters(trail, values)
        cursor = request.args.get("cursor", "")
        after = Cursor.decode(cursor) if cursor else None
        page = trail.page(current_actor(), filters, after=after, limit=PAGE_SIZE)
    except (BadFilter, BadDate) as bad:
        return _page(trail, values, status=400, error=_problem(bad.field))
    shown: dict[str, Any] = {name: value for name, value in values.items() if value}
    return _page(
        trail,
        values,
        events=page.events,
        next_url=url_for("admin_audit.audit", **shown, cursor=page.next_cursor.encode())
        if page.next_cursor
        else None,
        first_url=url_for("admin_audit.audit", **shown) if after is not None else None,
        csv_url=url_for("admin_audit.export", **shown),
    )


@bp.get("/audit.csv")
@staff_page(Permission.AUDIT_TRAIL)
def export() -> Response:
    trail = services().audit_trail()
    values = _raw_filters()
    try:
        chunks = trail.export_csv(current_actor(), _filters(trail, values))
    except (BadFilter, BadDate) as bad:
        return _page(trail, values, status=400, error=_problem(bad.field))
    moment = services().clock.now().strftime("%Y%m%dT%H%M%SZ")
    response = Response(stream_with_context(chunks), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="audit-{moment}.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _raw_filters() -> dict[str, str]:
    return {name: request.args.get(name, "") for name in FILTER_PARAMETERS}


def _filters(trail: AuditTrail, values: dict[str, str]) -> AuditFilters:
    for name, value in values.items():
        if len(value) > MAX_PARAMETER_LENGTH:
            raise BadFilter(name)
    return AuditFilters.parse(
        actor=values["actor"],
        account_id=values["account"],
        event=values["event"],
        since=_day(values, "since"),
        until=_day(values, "until"),
        zone=trail.zone,
    )


def _day(values: dict[str, str], name: str) -> date | None:
    text = values[name].strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise BadDate(name) from error


def _problem(field: str) -> str:
    worded: str = {
        "actor": _("The actor must be at most 100 printable characters, such as staff:ID or cli:alice."),
        "account": _("An account ID is letters and digits only."),
        "event": _(
            "An event name looks like signin.failed; end it with a dot (signin.) for every event of a kind."
        ),
        "since": _("Give the first day as a date (YYYY-MM-DD)."),
        "until": _("Give the last day as a date (YYYY-MM-DD), on or after the first day."),
        "cursor": _("That page of the audit trail does not exist; start again from the newest events."),
    }[field]
    return worded


def _page(trail: AuditTrail, values: dict[str, str], *, status: int = 200, **context: Any) -> Response:
    context.setdefault("events", [])
    body = render_template(
        "admin/audit.html",
        values=values,
        zone_name=str(trail.zone),
        local_time=lambda moment: _local(trail, moment),
        details_text=_details_text,
        **context,
    )
    return make_response(body, status)


def _local(trail: AuditTrail, moment: datetime) -> str:
    return moment.astimezone(trail.zone).strftime("%Y-%m-%d %H:%M:%S")


def _details_text(details: dict[str, Any] | None) -> str:
    shown = {key: value for key, value in (details or {}).items() if key != "actor"}
    return json.dumps(shown, sort_keys=True, ensure_ascii=False, default=str) if shown else ""
