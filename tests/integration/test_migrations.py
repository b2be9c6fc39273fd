"""The migrations themselves, on a database of their own per backend: data they move, and that
the models and the migrated schema agree."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask_migrate import check, downgrade, upgrade
from sqlalchemy import text

from idp.accounts.models import AccountType
from idp.extensions import db
from idp.web.context import services


def add_mail(state: str, *, sent_at: datetime | None, attempts: int) -> None:
    now = datetime.now(UTC)
    db.session.execute(
        text(
            "INSERT INTO outbound_email (id, purpose, to_address, subject, body_text, body_html,"
            " created_at, next_attempt_at, attempts, sent_at)"
            " VALUES (:id, 'password_reset', 'dana@example.org', :subject, :text, :html,"
            " :now, :now, :attempts, :sent_at)"
        ),
        {
            "id": secrets.token_hex(16),
            "subject": state,
            "text": f"{state}: http://localhost/reset/secret-{state}",
            "html": f"<p>{state}</p>",
            "now": now,
            "attempts": attempts,
            "sent_at": sent_at,
        },
    )


def test_mail_sent_or_given_up_before_0005_loses_its_body_and_waiting_mail_keeps_it(empty_app: Flask):
    upgrade(revision="0004_recovery")
    add_mail("sent", sent_at=datetime.now(UTC), attempts=1)
    add_mail("given-up", sent_at=None, attempts=30)
    add_mail("waiting", sent_at=None, attempts=2)
    db.session.commit()

    upgrade(revision="0005_erase_sent_mail")

    rows = db.session.execute(text("SELECT subject, body_text, body_html FROM outbound_email")).all()
    assert sorted(map(tuple, rows)) == [
        ("given-up", "", None),
        ("sent", "", None),
        ("waiting", "waiting: http://localhost/reset/secret-waiting", "<p>waiting</p>"),
    ]


# SQLite's reflection cannot read an index on an expression (lower(email)); PostgreSQL's compares it.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
def test_the_migrated_schema_is_the_models_schema(empty_app: Flask):
    upgrade()

    check()  # Alembic's autogenerate comparison: raises if a model and a migration differ


def test_links_made_before_0015_learn_their_students_school_and_follow_a_move(empty_app: Flask):
    upgrade()
    account = (
        services()
        .accounts()
        .create(
            username="pat",
            email="pat@example.org",
            password="correct-horse-battery-staple",
            first_name="Pat",
            last_name="Parent",
            account_type=AccountType.PARENT,
        )
    )
    guardianship = services().guardianship()
    here = guardianship.create_student(
        sis_id="S1",
        first_name="Kim",
        last_name="Kid",
        school_code="LES",
        access_id="A-1",
        access_password="p-1",
    )
    there = guardianship.create_student(
        sis_id="S2",
        first_name="Lou",
        last_name="Kid",
        school_code="HHS",
        access_id="A-2",
        access_password="p-2",
    )
    guardianship.link(account, here, "Mother")
    db.session.commit()
    schools = {"here": here.school_id, "there": there.school_id}
    downgrade(revision="0014_rosters")  # the links lose their copy of the school

    upgrade(revision="0015_search_shortcuts")

    def link_school() -> str:
        return db.session.execute(text("SELECT school_id FROM guardian_link")).scalar_one()

    assert link_school() == schools["here"]
    db.session.execute(text("UPDATE student SET school_id = :there WHERE sis_id = 'S1'"), schools)
    db.session.commit()
    assert link_school() == schools["there"]
