"""Migration 0016 on a database of its own per backend: mail queued before it gets a Message-ID."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from idp.extensions import db


def add_mail(subject: str) -> str:
    mail_id = secrets.token_hex(16)
    now = datetime.now(UTC)
    db.session.execute(
        text(
            "INSERT INTO outbound_email (id, purpose, to_address, subject, body_text, created_at,"
            " next_attempt_at, attempts) VALUES (:id, 'test', 'dana@example.org', :subject, 'words',"
            " :now, :now, 0)"
        ),
        {"id": mail_id, "subject": subject, "now": now},
    )
    return mail_id


def test_mail_queued_before_0016_gets_its_own_message_id_and_no_lease(empty_app: Flask):
    upgrade(revision="0015_search_shortcuts")
    first, second = add_mail("first"), add_mail("second")
    db.session.commit()

    upgrade(revision="0016_worker_leases")

    rows = db.session.execute(
        text("SELECT id, message_id, leased_until, lease_owner FROM outbound_email ORDER BY subject")
    ).all()
    assert [tuple(row) for row in rows] == [
        (first, f"<{first}.outbox@localhost>", None, None),
        (second, f"<{second}.outbox@localhost>", None, None),
    ]
    db.session.commit()

    downgrade(revision="0015_search_shortcuts")
    columns = db.session.execute(text("SELECT * FROM outbound_email")).keys()
    assert "message_id" not in columns and "leased_until" not in columns
    db.session.commit()
