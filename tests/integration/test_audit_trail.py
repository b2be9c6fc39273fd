"""The audit trail as staff read it (idp.admin.audit_trail), on both databases: filters, keyset
pages, the CSV export and its formula guard, and who may read it."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import select

from idp.accounts.models import Account
from idp.admin import audit_trail
from idp.admin.actor import Actor, NotPermitted
from idp.admin.audit_trail import CSV_COLUMNS, AuditFilters, AuditTrail, BadFilter, Cursor
from idp.admin.models import StaffRole
from idp.audit import AuditEvent, audit
from idp.extensions import db
from idp.students.models import GuardianLink, School, Student
from idp.web.context import services

DISTRICT_ADMIN = Actor.staff("a" * 32, StaffRole.DISTRICT_ADMIN)
T0 = datetime(2026, 3, 1, 7, 30, tzinfo=UTC)


def trail() -> AuditTrail:
    return services().audit_trail()


def names(events: list[AuditEvent] | tuple[AuditEvent, ...]) -> list[str]:
    return [event.name for event in events]


def record(name: str, minutes: int, *, account_id: str | None = None, **details: Any) -> AuditEvent:
    event = audit(db.session, name, account_id=account_id, at=T0 + timedelta(minutes=minutes), **details)
    db.session.commit()
    return event


def test_filters_by_actor_account_exact_event_and_event_prefix(
    app: Flask, make_account: Callable[..., Account]
) -> None:
    account = make_account()
    record("signin.succeeded", 1, account_id=account.id)
    record("signin.failed", 2, account_id=account.id)
    record("account.disabled", 3, account_id=account.id, actor="staff:1234", reason="moved")
    record("account.enabled", 4, actor="cli:alice")
    record("signing.key_rotated", 5)  # shares a prefix with "signin" but not with "signin."

    def found(**filters: Any) -> list[str]:
        events = trail().page(DISTRICT_ADMIN, AuditFilters.parse(**filters)).events
        return [name for name in names(list(events)) if name != "account.created"]

    assert found(actor="staff:1234") == ["account.disabled"]
    assert found(actor="cli:alice") == ["account.enabled"]
    assert found(account_id=account.id) == ["account.disabled", "signin.failed", "signin.succeeded"]
    assert found(event="signin.") == ["signin.failed", "signin.succeeded"]
    assert found(event="signin.failed") == ["signin.failed"]
    assert found(event="signin") == []
    assert found(event="account.", actor="cli:alice") == ["account.enabled"]


def test_pages_run_newest_first_and_a_cursor_never_repeats_or_skips_an_event(app: Flask) -> None:
    # Two events share a moment: the id breaks the tie, so the page boundary can fall between them.
    made = [record("key.rotated", minutes) for minutes in (1, 2, 2, 3, 4)]
    expected = [event.id for event in sorted(made, key=lambda e: (e.occurred_at, e.id), reverse=True)]
    filters = AuditFilters.parse(event="key.rotated")

    seen: list[str] = []
    cursor: Cursor | None = None
    for _ in range(3):
        page = trail().page(DISTRICT_ADMIN, filters, after=cursor, limit=2)
        seen += [event.id for event in page.events]
        cursor = page.next_cursor and Cursor.decode(page.next_cursor.encode())
    assert seen == expected
    assert cursor is None


def test_dates_are_whole_days_in_the_districts_time_zone(app: Flask) -> None:
    record("account.locked", 0)  # 07:30 UTC on 1 March is 23:30 on 28 February in Los Angeles
    los_angeles = ZoneInfo("America/Los_Angeles")
    zoned = AuditTrail(db.session, zone=los_angeles)

    def found(day: date, zone: ZoneInfo | None = None) -> list[str]:
        filters = AuditFilters.parse(event="account.locked", since=day, until=day, zone=zone or zoned.zone)
        return names(list(zoned.page(DISTRICT_ADMIN, filters).events))

    assert found(date(2026, 2, 28)) == ["account.locked"]
    assert found(date(2026, 3, 1)) == []
    assert found(date(2026, 3, 1), ZoneInfo("UTC")) == ["account.locked"]


def test_csv_export_holds_every_matching_event_read_in_batches_with_formulas_quoted(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_trail, "EXPORT_BATCH", 2)
    record("account.disabled", 1, actor='=HYPERLINK("http://evil")', reason="+1 for SUM(A1)")
    db.session.add(
        AuditEvent(name="signin.failed", occurred_at=T0 + timedelta(minutes=2), ip_address="-2+3", details={})
    )
    for minutes in (3, 4, 5):
        record("signin.succeeded", minutes, actor="@admin")
    record("key.rotated", 6)  # not matched by the filter

    chunks = list(trail().export_csv(DISTRICT_ADMIN, AuditFilters.parse(event="account.")))
    chunks += list(trail().export_csv(DISTRICT_ADMIN, AuditFilters.parse(event="signin.")))
    rows = [row for chunk in chunks for row in csv.reader(io.StringIO(chunk))]
    header, disabled, header_again, *signins = rows

    assert header == header_again == list(CSV_COLUMNS)
    assert disabled[:4] == ["2026-03-01T07:31:00Z", "account.disabled", "", '\'=HYPERLINK("http://evil")']
    assert disabled[6] == '{"actor": "=HYPERLINK(\\"http://evil\\")", "reason": "+1 for SUM(A1)"}'
    assert [row[1] for row in signins] == ["signin.succeeded"] * 3 + ["signin.failed"]
    assert {row[3] for row in signins[:3]} == {"'@admin"}
    assert signins[3][5] == "'-2+3"
    # Header, then batches of two: the signin export came in three chunks, none of them empty.
    assert len(chunks) == 2 + 3 and all(chunks)


def test_a_client_limited_to_a_school_reads_only_its_accounts_events(
    app: Flask, make_account: Callable[..., Account], make_student: Callable[..., Student]
) -> None:
    ours, theirs = make_account(), make_account()
    here, there = make_student(school_code="LES"), make_student(school_code="OTHER")
    db.session.add_all(
        [
            GuardianLink(account_id=ours.id, student=here, relationship="Mother"),
            GuardianLink(account_id=theirs.id, student=there, relationship="Father"),
        ]
    )
    db.session.commit()
    record("account.unlocked", 1, account_id=ours.id)
    record("account.unlocked", 2, account_id=theirs.id)
    record("key.rotated", 3)
    school_id = db.session.execute(select(School.id).where(School.code == "LES")).scalar_one()
    client = Actor.client("portal-sync", "admin:read", frozenset({school_id}))

    events = trail().page(client, AuditFilters.parse(event="account.unlocked")).events
    everything = trail().page(client, AuditFilters()).events

    assert [event.account_id for event in events] == [ours.id]
    assert {event.account_id for event in everything} == {ours.id}


@pytest.mark.parametrize("role", [StaffRole.HELP_DESK, StaffRole.SCHOOL_ADMIN])
def test_help_desk_and_school_admins_may_not_read_the_trail(app: Flask, role: StaffRole) -> None:
    actor = Actor.staff("b" * 32, role)
    with pytest.raises(NotPermitted):
        trail().page(actor, AuditFilters())
    with pytest.raises(NotPermitted):
        trail().export_csv(actor, AuditFilters())


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"actor": "x" * 101}, "actor"),
        ({"actor": "staff:\x00"}, "actor"),
        ({"account_id": "1' OR '1'='1"}, "account"),
        ({"event": "signin.%"}, "event"),
        ({"event": "Signin"}, "event"),
        ({"since": date(2026, 3, 2), "until": date(2026, 3, 1)}, "until"),
    ],
)
def test_bad_filters_are_refused_with_the_field_they_name(filters: dict[str, object], field: str) -> None:
    with pytest.raises(BadFilter) as refused:
        AuditFilters.parse(**filters)  # type: ignore[arg-type]
    assert refused.value.field == field


@pytest.mark.parametrize("cursor", ["", "not base64!", "MjAyNi0wMy0wMQ", "bm90IGEgZGF0ZXxhYmM"])
def test_a_forged_cursor_is_a_bad_filter(cursor: str) -> None:
    with pytest.raises(BadFilter):
        Cursor.decode(cursor)
