"""Migration 0012 on data: SQLite copies the student table, and nothing hanging from it is lost."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from idp.extensions import db

NOW = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


def add_family() -> None:
    """A school, a student, a parent whose primary student it is, and the link: as of 0011."""
    rows = (
        "INSERT INTO school (id, code, name, created_at) VALUES ('sch1', 'RHS', 'RHS', :now)",
        "INSERT INTO student (id, sis_id, first_name, last_name, school_id, access_id,"
        " access_password_hash, active, created_at)"
        " VALUES ('stu1', '100234', 'Zoe', 'Rivera', 'sch1', 'ZOE-1', '$argon2id$x', :yes, :now)",
        "INSERT INTO account (id, type, username, username_key, username_skeleton, email, first_name,"
        " last_name, password_hash, password_scheme, must_change_password, status, login_count,"
        " created_at, is_test_account, primary_student_id)"
        " VALUES ('acc1', 'parent', 'dana', 'dana', 'dana', 'dana@example.org', 'Dana', 'Rivera',"
        " '$argon2id$y', 'argon2id', :no, 'confirmed', 0, :now, :no, 'stu1')",
        "INSERT INTO guardian_link (id, account_id, student_id, relationship, status, created_at)"
        " VALUES ('lnk1', 'acc1', 'stu1', 'Mother', 'active', :now)",
    )
    for row in rows:
        db.session.execute(text(row), {"now": NOW, "yes": True, "no": False})
    db.session.commit()


def family() -> tuple[object, ...]:
    found = tuple(
        db.session.execute(
            text(
                "SELECT student.sis_id, account.primary_student_id, guardian_link.relationship"
                " FROM student JOIN guardian_link ON guardian_link.student_id = student.id"
                " JOIN account ON account.id = guardian_link.account_id"
            )
        ).one()
    )
    db.session.rollback()  # SQLite's BEGIN IMMEDIATE would hold the write lock the migration needs
    return found


def student_indexes() -> set[str]:
    if db.engine.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'student'"
    else:
        query = "SELECT indexname FROM pg_indexes WHERE tablename = 'student'"
    names = {name for (name,) in db.session.execute(text(query))}
    db.session.rollback()
    return names


def test_0012_keeps_links_primary_students_and_indexes_and_allows_no_access_password(empty_app: Flask):
    upgrade(revision="0011_account_search")
    add_family()
    indexes_before = student_indexes()

    upgrade(revision="0012_schools_and_access")

    assert family() == ("100234", "stu1", "Mother")
    assert student_indexes() == indexes_before  # with lower(sis_id), which SQLite cannot reflect
    if db.engine.dialect.name == "sqlite":
        assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert db.session.execute(text("PRAGMA foreign_key_check")).all() == []
        db.session.rollback()
    db.session.execute(
        text(
            "INSERT INTO student (id, sis_id, first_name, last_name, school_id, access_id, active,"
            " created_at, home_language) VALUES ('stu2', '100235', 'Adam', 'Rivera', 'sch1', 'ADAM-1',"
            " :yes, :now, 'es')"
        ),
        {"now": NOW, "yes": True},
    )
    db.session.execute(text("UPDATE school SET timezone = 'America/Chicago', address = '1 Main St'"))
    db.session.commit()

    downgrade(revision="0011_account_search")

    assert family() == ("100234", "stu1", "Mother")
    assert student_indexes() == indexes_before
    # A student left without an Access Password gets a hash nothing matches, not a NULL.
    assert (
        db.session.execute(text("SELECT access_password_hash FROM student WHERE id = 'stu2'")).scalar() == "!"
    )
