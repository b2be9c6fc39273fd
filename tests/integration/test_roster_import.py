"""The OneRoster import on both databases: a bulk set, a delta, the same delta again; a bad row
that leaves everything as it was; the dry run; removals that unlink parents' accounts, mailed."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from idp.accounts.models import Account
from idp.audit import AuditEvent
from idp.extensions import db
from idp.mail.models import OutboundEmail
from idp.students.models import GuardianLink, School, Student
from idp.students.roster.importer import RosterImport
from idp.students.roster.models import RosterGuardian, RosterGuardianStudent
from idp.students.roster.reader import FolderSource
from idp.students.roster.report import ImportReport
from idp.web.context import services

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "oneroster"
ACTOR = "cli:tester"
pytestmark = pytest.mark.usefixtures("app")


def run(folder: Path, *, dry_run: bool = False) -> ImportReport:
    report = services().roster_import().run(FolderSource(folder), actor=ACTOR, dry_run=dry_run)
    db.session.expire_all()
    return report


def counts(report: ImportReport) -> dict[str, Any]:
    return report.as_json()


def kinds(schools: int = 0, students: int = 0, guardians: int = 0, links: int = 0) -> dict[str, int]:
    return {"schools": schools, "students": students, "guardians": guardians, "links": links}


def snapshot() -> dict[str, Any]:
    """Every row the import may touch, as plain values: equal snapshots mean nothing changed."""
    return {
        "schools": rows(select(School.code, School.name, School.sourced_id)),
        "students": rows(
            select(
                Student.sis_id,
                Student.sourced_id,
                Student.first_name,
                Student.last_name,
                Student.grade,
                Student.home_language,
                Student.active,
                Student.access_id,
            )
        ),
        "guardians": rows(
            select(
                RosterGuardian.sourced_id,
                RosterGuardian.first_name,
                RosterGuardian.email,
                RosterGuardian.language,
                RosterGuardian.role,
            )
        ),
        "relations": relations(),
        "links": int(db.session.execute(select(func.count()).select_from(GuardianLink)).scalar_one()),
        "mail": int(db.session.execute(select(func.count()).select_from(OutboundEmail)).scalar_one()),
    }


def rows(statement: Any) -> list[tuple[Any, ...]]:
    return sorted(tuple(row) for row in db.session.execute(statement))


def relations() -> list[tuple[str, str]]:
    return rows(
        select(RosterGuardian.sourced_id, Student.sourced_id)
        .join(RosterGuardianStudent, RosterGuardianStudent.guardian_id == RosterGuardian.id)
        .join(Student, Student.id == RosterGuardianStudent.student_id)
    )


def student(sourced_id: str) -> Student:
    return db.session.execute(select(Student).where(Student.sourced_id == sourced_id)).scalar_one()


@pytest.fixture
def bulk() -> Path:
    return FIXTURES / "bulk"


@pytest.fixture
def delta() -> Path:
    return FIXTURES / "delta"


def test_a_bulk_roster_creates_schools_students_guardians_and_their_relations(bulk: Path):
    report = run(bulk)

    assert counts(report) == {
        "created": kinds(schools=2, students=3, guardians=3, links=4),
        "updated": kinds(),
        "unchanged": kinds(),
        "removed": kinds(),
        "rejected": [],
    }
    schools = dict(rows(select(School.code, School.name)))
    # A school's code is the org's identifier, else its sourcedId; the district is no school.
    assert schools == {
        "LES": "Lincoln Elementary School",
        "org-rhs": 'Roosevelt High School, "Home of the Riders"',
    }
    zoe, max_, ava = student("stu-1"), student("stu-2"), student("stu-3")
    assert (zoe.sis_id, zoe.first_name, zoe.grade, zoe.home_language, zoe.school.code) == (
        "100234",
        "Zoe",
        "03",
        "es",
        "LES",
    )
    # demographics.csv's language wins over users.csv's; an id falls back to the sourcedId.
    assert (max_.sis_id, max_.home_language, max_.school.code) == ("100235", "pt-BR", "org-rhs")
    assert (ava.sis_id, ava.first_name, ava.last_name, ava.grade) == (
        "stu-3",
        'Ava "Ace"',
        "O'Neil, Jr.",
        "11",
    )
    # New students get an Access ID, and no Access Password until a letter gives one.
    assert all(s.access_id and s.access_password_hash is None for s in (zoe, max_, ava))
    guardians = {g.sourced_id: g for g in db.session.execute(select(RosterGuardian)).scalars()}
    assert set(guardians) == {"par-1", "par-2", "rel-1"}  # the teacher is not imported
    assert (guardians["par-1"].email, guardians["par-1"].language, guardians["par-1"].relationship) == (
        "dana@example.org",
        "es-MX",
        "Parent",
    )
    assert (guardians["par-2"].email, guardians["rel-1"].relationship) == (None, "Relative")
    assert relations() == [("par-1", "stu-1"), ("par-1", "stu-2"), ("par-2", "stu-1"), ("rel-1", "stu-3")]
    (event,) = db.session.execute(select(AuditEvent).where(AuditEvent.name == "roster.imported")).scalars()
    assert event.details["actor"] == ACTOR and event.details["created"]["students"] == 3


def test_importing_the_same_bulk_set_again_changes_nothing(bulk: Path):
    run(bulk)
    before = snapshot()

    report = run(bulk)

    assert counts(report)["unchanged"] == kinds(schools=2, students=3, guardians=3, links=4)
    assert all(counts(report)[outcome] == kinds() for outcome in ("created", "updated", "removed"))
    assert snapshot() == before


def test_batches_of_two_rows_import_what_one_batch_does(bulk: Path):
    # Every walk over the staged rows (users, agents by line and position) crosses batches.
    def import_in_pairs() -> ImportReport:
        roster = RosterImport(
            db.session, clock=services().clock, unlinking=services().guardian_unlinking(), batch_size=2
        )
        report = roster.run(FolderSource(bulk), actor=ACTOR)
        db.session.expire_all()
        return report

    first = import_in_pairs()
    before = snapshot()
    again = import_in_pairs()

    assert counts(first)["created"] == kinds(schools=2, students=3, guardians=3, links=4)
    assert relations() == [("par-1", "stu-1"), ("par-1", "stu-2"), ("par-2", "stu-1"), ("rel-1", "stu-3")]
    assert counts(again)["unchanged"] == kinds(schools=2, students=3, guardians=3, links=4)
    assert snapshot() == before


def test_a_delta_then_the_same_delta_again(bulk: Path, delta: Path, make_account: Callable[..., Account]):
    run(bulk)
    guardianship = services().guardianship()
    dana = make_account(username="dana.rivera", email="dana@example.org")
    june = make_account(username="june.lee", email="june.lee@example.org")
    guardianship.link(dana, student("stu-1"), "Mother")
    guardianship.link(dana, student("stu-2"), "Mother")
    guardianship.link(june, student("stu-3"), "Grandparent")
    # Dana accepted par-1's invitation: the roster's removals of par-1's relations reach her account.
    db.session.execute(
        select(RosterGuardian).where(RosterGuardian.sourced_id == "par-1")
    ).scalar_one().account_id = dana.id
    db.session.commit()

    report = run(delta)

    assert counts(report) == {
        "created": kinds(students=1, links=1),
        "updated": kinds(guardians=1),
        "unchanged": kinds(links=1),
        "removed": kinds(students=1, links=2),
        "rejected": [],
    }
    assert report.accounts_unlinked == 2
    ava, lia = student("stu-3"), student("stu-4")
    assert ava.active is False and lia.active and lia.sis_id == "100300" and lia.school.code == "LES"
    assert relations() == [("par-1", "stu-1"), ("par-2", "stu-1"), ("par-2", "stu-4")]
    linked = rows(
        select(Account.username, Student.sourced_id)
        .join(GuardianLink.student)
        .join(Account, Account.id == GuardianLink.account_id)
    )
    # Ava left: June loses her; par-1 no longer names Max: Dana, who accepted par-1's invitation, loses him.
    assert linked == [("dana.rivera", "stu-1")]
    removed = db.session.execute(
        select(OutboundEmail.to_address).where(OutboundEmail.purpose == "student_removed")
    ).scalars()
    assert sorted(removed) == ["dana@example.org", "june.lee@example.org"]
    unlinked = db.session.execute(
        select(AuditEvent).where(AuditEvent.name == "guardian_link.removed")
    ).scalars()
    assert {(e.details["student_id"], e.details["actor"], e.details["source"]) for e in unlinked} == {
        ("stu-3", ACTOR, "roster"),
        ("100235", ACTOR, "roster"),
    }
    before = snapshot()

    again = run(delta)

    assert counts(again) == {
        "created": kinds(),
        "updated": kinds(),
        "unchanged": kinds(students=2, guardians=1, links=2),
        "removed": kinds(),
        "rejected": [],
    }
    assert snapshot() == before


def test_a_dry_run_reports_the_changes_and_writes_nothing(bulk: Path):
    before = snapshot()

    report = run(bulk, dry_run=True)

    assert counts(report)["created"] == kinds(schools=2, students=3, guardians=3, links=4)
    assert snapshot() == before


def test_one_bad_row_rejects_the_whole_roster_and_writes_nothing(bulk: Path, tmp_path: Path):
    run(bulk)
    before = snapshot()
    changed = tmp_path / "roster"
    shutil.copytree(bulk, changed)
    users = (changed / "users.csv").read_text()
    # A new student with a good row, and a guardian whose address is not one.
    users = users.replace("june.lee@example.org", "june.lee(at)example.org")
    users += "stu-9,,,true,new.kid,,New,Kid,,100999,,,,,05,,,,,,,org-les,,\n"
    (changed / "users.csv").write_text(users)
    (changed / "roles.csv").write_text(
        (changed / "roles.csv").read_text() + "role-9,,,stu-9,primary,student,,,org-les,\n"
    )

    report = run(changed)

    assert [(r.file, r.line, r.reason) for r in report.rejected] == [
        ("users.csv", 7, "email 'june.lee(at)example.org' is not a valid address")
    ]
    assert all(
        counts(report)[outcome] == kinds() for outcome in ("created", "updated", "unchanged", "removed")
    )
    assert snapshot() == before


def write_set(folder: Path, *, mode: str = "bulk", **files: str) -> Path:
    """A OneRoster set of the given files (``users_csv=…``), the others absent."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = ["propertyName,value", "manifest.version,1.0", "oneroster.version,1.2"]
    for name in ("orgs", "users", "roles", "demographics"):
        key = f"{name}_csv"
        manifest.append(f"file.{name},{mode if key in files else 'absent'}")
        if key in files:
            (folder / f"{name}.csv").write_text(files[key])
    (folder / "manifest.csv").write_text("\n".join(manifest) + "\n")
    return folder


ORGS = (
    "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n"
    "org-les,,,Lincoln Elementary,school,LES,\n"
)
ROLES_HEADER = (
    "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId,"
    "userProfileSourcedId\n"
)
USERS_HEADER = (
    "sourcedId,status,dateLastModified,givenName,familyName,identifier,email,agentSourcedIds,grades\n"
)


def test_schools_and_students_made_by_hand_are_adopted_by_their_code_and_id(
    tmp_path: Path, make_student: Callable[..., Student]
):
    made = make_student(sis_id="100234", first_name="Zoe", last_name="Rivera", school_code="LES")
    access_id = made.access_id
    folder = write_set(
        tmp_path / "set",
        orgs_csv=ORGS,
        users_csv=USERS_HEADER + "stu-1,,,Zoé,Rivera,100234,,,04\n",
        roles_csv=ROLES_HEADER + "r-1,,,stu-1,primary,student,,,org-les,\n",
    )

    report = run(folder)

    assert counts(report)["updated"] == kinds(schools=1, students=1)
    assert counts(report)["created"] == kinds()
    adopted = student("stu-1")
    # The same row: its Access ID (and any parent's link) stays; the roster's values win.
    assert (adopted.id, adopted.access_id, adopted.first_name, adopted.grade) == (
        made.id,
        access_id,
        "Zoé",
        "04",
    )
    school = db.session.execute(select(School).where(School.code == "LES")).scalar_one()
    assert (school.sourced_id, school.name) == ("org-les", "Lincoln Elementary")


def test_an_id_that_belongs_to_another_rostered_student_is_rejected(tmp_path: Path):
    first = write_set(
        tmp_path / "first",
        orgs_csv=ORGS,
        users_csv=USERS_HEADER + "stu-1,,,Zoe,Rivera,100234,,,\n",
        roles_csv=ROLES_HEADER + "r-1,,,stu-1,primary,student,,,org-les,\n",
    )
    assert not run(first).is_rejected
    second = write_set(
        tmp_path / "second",
        orgs_csv=ORGS,
        users_csv=USERS_HEADER
        + "stu-2,,,Max,Rivera,100234,,,\nstu-3,,,Ava,Stone,200001,,,\nstu-4,,,Eli,Stone,200001,,,\n",
        roles_csv=ROLES_HEADER
        + "r-2,,,stu-2,primary,student,,,org-les,\nr-3,,,stu-3,primary,student,,,org-les,\n"
        + "r-4,,,stu-4,primary,student,,,org-nowhere,\n",
    )
    before = snapshot()

    report = run(second)

    assert [(r.line, r.reason) for r in report.as_rows()] == [
        (2, "student id '100234' already belongs to another student"),
        (4, "this student's school, org 'org-nowhere', is in neither orgs.csv nor the provider"),
        (4, "student id '200001' is also on line 3"),
    ]
    assert snapshot() == before


def test_a_guardian_removed_by_a_delta_takes_its_relations_and_its_accounts_links(
    tmp_path: Path, make_account: Callable[..., Account]
):
    run(FIXTURES / "bulk")
    june = make_account(username="june.lee", email="june.lee@example.org")
    services().guardianship().link(june, student("stu-3"), "Relative", allowed=("Relative",))
    db.session.execute(
        select(RosterGuardian).where(RosterGuardian.sourced_id == "rel-1")
    ).scalar_one().account_id = june.id
    db.session.commit()
    delta = write_set(
        tmp_path / "delta",
        mode="delta",
        users_csv=USERS_HEADER.replace(
            "sourcedId,status,dateLastModified", "sourcedId,status,dateLastModified"
        )
        + "rel-1,tobedeleted,2026-12-01,June,Lee,,june.lee@example.org,stu-3,\n",
    )

    report = run(delta)

    assert counts(report)["removed"] == kinds(guardians=1, links=1)
    assert report.accounts_unlinked == 1
    assert ("rel-1", "stu-3") not in relations()
    assert (
        db.session.execute(select(RosterGuardian).where(RosterGuardian.sourced_id == "rel-1")).first() is None
    )
    assert db.session.execute(select(GuardianLink).where(GuardianLink.account_id == june.id)).first() is None
    (mail,) = db.session.execute(
        select(OutboundEmail).where(OutboundEmail.purpose == "student_removed")
    ).scalars()
    assert mail.to_address == "june.lee@example.org" and "Ava" in mail.body_text


def test_a_user_who_is_both_student_and_guardian_or_without_a_role_is_rejected(tmp_path: Path):
    folder = write_set(
        tmp_path / "set",
        orgs_csv=ORGS,
        users_csv=USERS_HEADER + "u-1,,,Zoe,Rivera,,,,\nu-2,,,Max,Rivera,,,,\n",
        roles_csv=ROLES_HEADER
        + "r-1,,,u-1,primary,student,,,org-les,\nr-2,,,u-1,secondary,parent,,,org-les,\n",
    )

    report = run(folder)

    assert [(r.file, r.line, r.reason) for r in report.rejected] == [
        ("users.csv", 2, "a user may not be both a student and a guardian"),
        ("users.csv", 3, "no role for this user in roles.csv"),
    ]
