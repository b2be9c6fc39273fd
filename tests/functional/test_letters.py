"""``idp students letters``: the PDF read back with pypdf, its QR code decoded, its passwords tried."""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import zxingcpp
from click.testing import Result
from flask import Flask
from pypdf import PdfReader

from idp.extensions import db
from idp.students.access import AccessDenied
from idp.students.letters import LETTER_TEXTS, letter_language
from idp.students.models import Student
from idp.web.context import services
from tests.functional.test_cli import assert_failed_with_one_line

ACCESS_ID = re.compile(r"Access ID(?: \(identificador de acceso\))? ?([0-9A-Z-]{4,})")
ACCESS_PASSWORD = re.compile(r"Access Password(?: \(contraseña de acceso\))? ?([0-9a-z]{12})")


@pytest.fixture
def idp(app: Flask) -> Callable[..., Result]:
    """Run ``idp ARGS…`` against the test app, then read what it committed."""
    runner = app.test_cli_runner()

    def run(*args: str) -> Result:
        result = runner.invoke(args=list(args))
        db.session.rollback()
        db.session.expire_all()
        return result

    return run


def page_texts(path: Path) -> list[str]:
    """Each page's text, its white space made single spaces."""
    return [" ".join(page.extract_text().split()) for page in PdfReader(path).pages]


def check(access_id: str, password: str) -> Student:
    return services().student_access().check(access_id, password, ip_address="203.0.113.7")


@pytest.fixture
def rivera_school(make_student):
    """Roosevelt High School with three active students (one Spanish-speaking family) and one gone."""
    services().schools().create(code="RHS", name="Roosevelt High School", address="1200 Elm Street")
    services().district_options().set(name="Springfield Public Schools")
    db.session.commit()
    zoe = make_student(sis_id="100234", first_name="Zoe", last_name="Rivera", school_code="RHS",
                       access_id="ZR-1", access_password="orchid-42")  # fmt: skip
    ana = make_student(sis_id="100236", first_name="Ana", last_name="Nguyễn Thị", school_code="RHS")
    ana.home_language = "es-MX"
    make_student(sis_id="100237", first_name="Łukasz", last_name="Ørsted", school_code="RHS")
    gone = make_student(sis_id="100238", first_name="Gone", last_name="Away", school_code="RHS")
    gone.active = False
    make_student(sis_id="200001", school_code="LES", access_id="LES-1", access_password="keep-me")
    db.session.commit()
    return zoe


def test_letters_hold_one_page_per_active_student_with_working_credentials(
    idp, rivera_school, tmp_path, caplog
):
    out = tmp_path / "letters.pdf"

    with caplog.at_level(logging.DEBUG):
        result = idp("students", "letters", "--school", "RHS", "--out", str(out))

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    assert "wrote 3 letter(s)" in result.stderr
    pages = page_texts(out)
    assert len(pages) == 3
    # By last name: Nguyễn Thị, Rivera, Ørsted.
    names = ["Ana Nguyễn Thị", "Zoe Rivera", "Łukasz Ørsted"]
    for page, name in zip(pages, names, strict=True):
        assert "Springfield Public Schools" in page
        assert "Roosevelt High School" in page and "1200 Elm Street" in page
        assert name in page
        assert services().issuer + "/register" in page
        access_id = ACCESS_ID.search(page)
        password = ACCESS_PASSWORD.search(page)
        assert access_id and password, page
        assert check(access_id.group(1), password.group(1)).first_name == name.split()[0]
        assert password.group(1) not in result.stderr + caplog.text
    assert ACCESS_ID.search(pages[1]).group(1) == "ZR-1"  # an Access ID is kept
    with pytest.raises(AccessDenied):
        check("ZR-1", "orchid-42")  # the old Access Password stopped working
    assert check("LES-1", "keep-me").sis_id == "200001"  # another school's letters are not reissued


def test_the_family_language_is_used_where_known_else_the_districts(idp, rivera_school, tmp_path):
    out = tmp_path / "letters.pdf"
    idp("students", "letters", "--school", "RHS", "--out", str(out))

    spanish, english, _ = page_texts(out)

    assert LETTER_TEXTS["es"].title in spanish and "Cómo crear su cuenta" in spanish
    assert LETTER_TEXTS["en"].title in english and "How to create your account" in english
    assert letter_language("spa", "en") == "es"
    assert letter_language("fr", "es") == "es"
    assert letter_language(None, "de") == "en"


def test_the_qr_code_decodes_to_the_registration_page(idp, rivera_school, tmp_path):
    out = tmp_path / "letters.pdf"
    idp("students", "letters", "--school", "RHS", "--out", str(out))
    url = services().issuer + "/register"

    for page in PdfReader(out).pages:
        (image,) = page.images
        decoded = zxingcpp.read_barcode(image.image)
        assert decoded is not None and decoded.text == url


def test_single_use_letters_say_the_password_works_once(idp, rivera_school, tmp_path):
    services().district_options().set(single_use_access_passwords=True)
    db.session.commit()
    out = tmp_path / "letters.pdf"

    idp("students", "letters", "--school", "RHS", "--out", str(out))

    spanish, english, _ = page_texts(out)
    assert "This Access Password works only once." in english
    assert "Este Access Password solo funciona una vez." in spanish


def test_the_file_is_readable_by_its_owner_alone_even_over_an_open_file(idp, rivera_school, tmp_path):
    out = tmp_path / "letters.pdf"
    out.write_text("an older file anyone could read")
    out.chmod(0o644)
    old_umask = os.umask(0)
    try:
        result = idp("students", "letters", "--school", "RHS", "--out", str(out))
    finally:
        os.umask(old_umask)

    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert len(PdfReader(out).pages) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["letters.pdf"]  # no temporary file left


@pytest.mark.parametrize(
    ("school", "out", "fragment"),
    [
        ("NOPE", "letters.pdf", "no school with code 'NOPE'"),
        ("EMPTY", "letters.pdf", "has no active students"),
        ("RHS", "missing-folder/letters.pdf", "cannot write"),
    ],
)
def test_refused_letters_write_nothing_and_change_no_password(
    idp, rivera_school, tmp_path, school, out, fragment
):
    services().schools().create(code="EMPTY", name="Empty School")
    db.session.commit()

    result = idp("students", "letters", "--school", school, "--out", str(tmp_path / out))

    assert_failed_with_one_line(result, fragment)
    assert list(tmp_path.iterdir()) == []
    assert check("ZR-1", "orchid-42").sis_id == "100234"
