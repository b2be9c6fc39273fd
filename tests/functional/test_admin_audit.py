"""The console's audit trail page and its CSV export over HTTP: filters, pages, read-only."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from idp.accounts.models import Account
from idp.admin.models import StaffRole
from idp.admin.views import audit as audit_view
from idp.audit import audit
from idp.extensions import db
from tests.admin_fixtures import csrf_of

StaffClient = Callable[..., tuple[FlaskClient, Account]]
T0 = datetime(2026, 3, 1, 7, 30, tzinfo=UTC)


def record(name: str, minutes: int, **details: Any) -> None:
    audit(db.session, name, at=T0 + timedelta(minutes=minutes), ip_address="192.0.2.7", **details)
    db.session.commit()


def test_the_page_filters_pages_newest_first_and_refuses_bad_filters(
    staff_client: StaffClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_view, "PAGE_SIZE", 2)
    client, _ = staff_client()
    for minutes in range(3):
        record("key.rotated", minutes, actor="cli:alice", kid=f"k{minutes}")
    record("key.retired", 5, actor="cli:bob")

    first = client.get("/admin/audit?event=key.&actor=cli:alice&since=2026-03-01&until=2026-03-01")
    older = first.text.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
    second = client.get(older)

    assert first.status_code == 200 and "time zone, UTC" in first.text
    assert "key.retired" not in first.text + second.text
    assert first.text.index(kid("k2")) < first.text.index(kid("k1")) and kid("k0") not in first.text
    assert kid("k0") in second.text and kid("k1") not in second.text and 'rel="next"' not in second.text
    assert (
        'href="/admin/audit.csv?actor=cli:alice&amp;event=key.&amp;since=2026-03-01&amp;until=2026-03-01"'
        in (first.text)
    )
    for query, message in (
        ("until=2026-02-30", "Give the last day as a date"),
        ("event=%25", "An event name looks like signin.failed"),
        ("account=" + "x" * 300, "An account ID is letters and digits only."),
    ):
        for path in ("/admin/audit", "/admin/audit.csv"):
            answer = client.get(f"{path}?{query}")
            assert answer.status_code == 400 and message in answer.text, (path, query)
    forged = client.get("/admin/audit?cursor=forged")
    assert forged.status_code == 400 and "start again from the newest events" in forged.text


def kid(value: str) -> str:
    """The details cell of an event recorded with ``kid=value``, as the page escapes it."""
    return f"{{&#34;kid&#34;: &#34;{value}&#34;}}"


def test_the_csv_export_downloads_every_matching_event_with_formulas_defused(
    staff_client: StaffClient,
) -> None:
    client, _ = staff_client()
    record("key.rotated", 1, actor="=cmd|' /C calc'!A0", reason="-5")
    record("key.retired", 2, actor="cli:alice")
    record("account.disabled", 3)

    answer = client.get("/admin/audit.csv?event=key.")

    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert answer.headers["Content-Disposition"].startswith('attachment; filename="audit-')
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == ["time", "event", "account", "actor", "client", "ip", "details"]
    assert rows[1] == [
        "2026-03-01T07:32:00Z",
        "key.retired",
        "",
        "cli:alice",
        "",
        "192.0.2.7",
        '{"actor": "cli:alice"}',
    ]
    assert rows[2][1:4] == ["key.rotated", "", "'=cmd|' /C calc'!A0"]
    assert len(rows) == 3


def test_the_trail_is_read_only(staff_client: StaffClient) -> None:
    client, _ = staff_client()
    token = csrf_of(client.get("/admin/audit").text)  # the sign-out form's
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("/admin/audit", "/admin/audit.csv"):
            answer = client.open(path, method=method, data={"csrf_token": token})
            assert answer.status_code == 405, (method, path)
    event_id = audit(db.session, "key.rotated").id
    db.session.commit()
    assert client.delete(f"/admin/audit/{event_id}", data={"csrf_token": token}).status_code == 404


def test_a_help_desk_may_not_read_the_trail(staff_client: StaffClient) -> None:
    help_desk, _ = staff_client(StaffRole.HELP_DESK)
    assert help_desk.get("/admin/audit").status_code == 403
    assert help_desk.get("/admin/audit.csv").status_code == 403
