"""The audit trail as staff read it: filtered, newest first, a page at a time, or all of it as CSV.

Read-only by design: nothing here (or anywhere in the console and the API) changes or deletes an
event. Pages are keyset-paginated on ``(occurred_at, id)``, so a page deep in a large trail costs
what the first one does and events written meanwhile neither repeat nor go missing.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select

from idp.accounts.models import Account
from idp.admin.actor import Actor
from idp.admin.roles import Permission
from idp.audit import AuditEvent
from idp.db import DbSession

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# The CSV export reads the trail in batches of this many rows, never all of it at once.
EXPORT_BATCH = 500
MAX_ACTOR_LENGTH = 100
MAX_ACCOUNT_ID_LENGTH = 32
# Event names are ``noun.past_verb``; a filter ending in "." matches every event of the noun.
EVENT_NAME = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]*)*")
CSV_COLUMNS = ("time", "event", "account", "actor", "client", "ip", "details")
# OWASP "CSV injection": a spreadsheet runs a cell starting with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class BadFilter(ValueError):
    """A filter cannot be used as given; ``field`` names it (``actor``, ``account``, ``event``,
    ``since``, ``until``, ``cursor``)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"bad audit filter: {field}")
        self.field = field


@dataclass(frozen=True)
class AuditFilters:
    """What to look for; every part is optional. ``since`` is inclusive and ``until`` exclusive."""

    actor: str | None = None
    account_id: str | None = None
    event: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(
        cls,
        *,
        actor: str | None = None,
        account_id: str | None = None,
        event: str | None = None,
        since: date | None = None,
        until: date | None = None,
        zone: tzinfo = UTC,
    ) -> AuditFilters:
        """Check raw filters; the dates are whole days in ``zone``, ``until`` included."""
        actor = (actor or "").strip() or None
        account_id = (account_id or "").strip() or None
        event = (event or "").strip() or None
        if actor is not None and (len(actor) > MAX_ACTOR_LENGTH or not actor.isprintable()):
            raise BadFilter("actor")
        if account_id is not None and (
            len(account_id) > MAX_ACCOUNT_ID_LENGTH or not account_id.isalnum() or not account_id.isascii()
        ):
            raise BadFilter("account")
        if event is not None and (len(event) > 64 or not EVENT_NAME.fullmatch(event)):
            raise BadFilter("event")
        if since is not None and until is not None and since > until:
            raise BadFilter("until")
        return cls(
            actor=actor,
            account_id=account_id,
            event=event,
            since=_start_of(since, zone) if since is not None else None,
            until=_start_of(until + timedelta(days=1), zone) if until is not None else None,
        )

    @property
    def is_empty(self) -> bool:
        return all(
            value is None for value in (self.actor, self.account_id, self.event, self.since, self.until)
        )


def _start_of(day: date, zone: tzinfo) -> datetime:
    """Return the instant ``day`` starts in ``zone``, in UTC."""
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the last event's time and id. Opaque to clients (``encode``/``decode``)."""

    occurred_at: datetime
    event_id: str

    def encode(self) -> str:
        raw = f"{self.occurred_at.astimezone(UTC).isoformat()}|{self.event_id}"
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            moment, event_id = raw.split("|")
            occurred_at = datetime.fromisoformat(moment)
        except (binascii.Error, UnicodeDecodeError, ValueError) as error:
            raise BadFilter("cursor") from error
        if occurred_at.tzinfo is None or not event_id.isalnum() or len(event_id) > 32:
            raise BadFilter("cursor")
        return cls(occurred_at, event_id)


@dataclass(frozen=True)
class AuditPage:
    events: Sequence[AuditEvent]
    # The cursor of the next (older) page; None on the last page.
    next_cursor: Cursor | None


class AuditTrail:
    """Read the audit events an actor may see."""

    def __init__(self, session: DbSession, *, zone: tzinfo = UTC) -> None:
        self.session = session
        # The district's time zone: the day boundaries of the date filters.
        self.zone = zone

    def page(
        self, actor: Actor, filters: AuditFilters, *, after: Cursor | None = None, limit: int = PAGE_SIZE
    ) -> AuditPage:
        """Return the newest matching events older than ``after``, at most ``limit`` of them."""
        actor.require(Permission.AUDIT_TRAIL)
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        events = self._batch(actor, filters, after, limit + 1)
        if len(events) <= limit:
            return AuditPage(events, None)
        shown = events[:limit]
        return AuditPage(shown, Cursor(shown[-1].occurred_at, shown[-1].id))

    def export_csv(self, actor: Actor, filters: AuditFilters) -> Iterator[str]:
        """Return the matching events as CSV text, produced a batch at a time as it is read.

        The permission is checked now, not when the first chunk is asked for, so a refusal is an
        exception of this call rather than of a response already under way.
        """
        actor.require(Permission.AUDIT_TRAIL)
        return self._csv_chunks(actor, filters)

    def _csv_chunks(self, actor: Actor, filters: AuditFilters) -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        yield _drain(buffer)
        after: Cursor | None = None
        while True:
            # Plain rows, not ORM objects: the session keeps nothing of what was exported.
            rows = self.session.execute(self._query(EXPORTED, actor, filters, after, EXPORT_BATCH)).all()
            for row in rows:
                writer.writerow([neutralised(cell) for cell in csv_row(*row)])
            if rows:
                yield _drain(buffer)
            if len(rows) < EXPORT_BATCH:
                return
            after = Cursor(rows[-1].occurred_at, rows[-1].id)

    def _batch(
        self, actor: Actor, filters: AuditFilters, after: Cursor | None, limit: int
    ) -> list[AuditEvent]:
        return list(self.session.execute(self._query((AuditEvent,), actor, filters, after, limit)).scalars())

    @staticmethod
    def _query(
        columns: Sequence[Any], actor: Actor, filters: AuditFilters, after: Cursor | None, limit: int
    ) -> Select[Any]:
        query = select(*columns).where(*_conditions(actor, filters))
        if after is not None:
            query = query.where(
                or_(
                    AuditEvent.occurred_at < after.occurred_at,
                    and_(AuditEvent.occurred_at == after.occurred_at, AuditEvent.id < after.event_id),
                )
            )
        return query.order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc()).limit(limit)


def _conditions(actor: Actor, filters: AuditFilters) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if not actor.whole_district:
        # An actor limited to some schools sees the events of the accounts it reaches, no others.
        found.append(AuditEvent.account_id.in_(select(Account.id).where(actor.reaches_accounts())))
    if filters.actor is not None:
        # details->>'actor' on PostgreSQL, json_extract(details, '$.actor') on SQLite.
        found.append(AuditEvent.details["actor"].as_string() == filters.actor)
    if filters.account_id is not None:
        found.append(AuditEvent.account_id == filters.account_id)
    if filters.event is not None:
        if filters.event.endswith("."):
            found.append(AuditEvent.name.startswith(filters.event, autoescape=True))
        else:
            found.append(AuditEvent.name == filters.event)
    if filters.since is not None:
        found.append(AuditEvent.occurred_at >= filters.since)
    if filters.until is not None:
        found.append(AuditEvent.occurred_at < filters.until)
    return found


EXPORTED = (
    AuditEvent.occurred_at,
    AuditEvent.id,
    AuditEvent.name,
    AuditEvent.account_id,
    AuditEvent.client_id,
    AuditEvent.ip_address,
    AuditEvent.details,
)


def csv_row(
    occurred_at: datetime,
    event_id: str,
    name: str,
    account_id: str | None,
    client_id: str | None,
    ip_address: str | None,
    details: dict[str, Any] | None,
) -> list[str]:
    """Return the export's cells for one event, in the order of ``CSV_COLUMNS``."""
    actor = (details or {}).get("actor")
    return [
        occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        name,
        account_id or "",
        "" if actor is None else str(actor),
        client_id or "",
        ip_address or "",
        json.dumps(details or {}, sort_keys=True, ensure_ascii=False, default=str),
    ]


def neutralised(cell: str) -> str:
    """Return ``cell`` so that no spreadsheet reads it as a formula (a leading quote if needed)."""
    return f"'{cell}" if cell.startswith(FORMULA_STARTS) else cell


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


__all__ = [
    "CSV_COLUMNS",
    "AuditFilters",
    "AuditPage",
    "AuditTrail",
    "BadFilter",
    "Cursor",
    "csv_row",
    "neutralised",
]
