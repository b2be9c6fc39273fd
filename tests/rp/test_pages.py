"""The portal's pages over HTTP (Flask's test client) with a signed-in session in its database.

The sign-in itself needs the provider and is tested end to end (tests/e2e/test_portal_*.py);
here the session is stored the way the callback stores it once the ID token has passed.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree as ET

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.clock import FrozenClock
from relying_party_demo.models import StoredSession
from relying_party_demo.students import SCHOOLS
from tests.rp.conftest import SignIn, dana_claims

NOT_AVAILABLE = "Student information is not available at this time."


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def without_csrf_token(html: str) -> str:
    # The sign-out form's token carries a timestamp in seconds: two visits may straddle one.
    return re.sub(r'name="csrf_token" type="hidden" value="[^"]*"', 'name="csrf_token"', html)


def tabs(html: str) -> list[str]:
    return re.findall(r'<a class="tab" [^>]*>([^<]+)</a>', html)


def stored_sessions(app: Flask) -> list[StoredSession]:
    with Session(app.extensions["relying_party_demo"].engine) as db:
        return list(db.execute(select(StoredSession)).scalars())


def test_without_a_session_the_start_page_is_the_sign_in_page(portal: FlaskClient) -> None:
    response = portal.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'id="sign-in"' in html and ">Sign In<" in html
    assert 'action="/login"' in html
    # Nothing is stored for a visit: no cookie, no row.
    assert "Set-Cookie" not in response.headers


def test_student_pages_need_a_session(portal: FlaskClient) -> None:
    for path in ("/students/100234", "/students/100234/print", "/students/100234/export.xml"):
        response = portal.get(path)
        assert response.status_code == 302 and response.headers["Location"] == "/"


def test_the_start_page_welcomes_by_name_with_the_first_sign_in_noted(
    portal: FlaskClient, sign_in_as: SignIn
) -> None:
    sign_in_as()
    html = portal.get("/").get_data(as_text=True)
    assert "Welcome, Dana Rivera" in text_of(html)
    assert 'class="account-name" tabindex="0" title="This is your first sign-in">Dana Rivera<' in html
    assert ">Help<" in html and ">Sign Out<" in html


def test_hovering_the_name_tells_the_previous_sign_in(portal: FlaskClient, sign_in_as: SignIn) -> None:
    previous = datetime(2026, 3, 2, 14, 5, tzinfo=UTC)
    sign_in_as(dana_claims(last_login_at=int(previous.timestamp())))
    html = portal.get("/").get_data(as_text=True)
    assert 'title="Previous sign-in: Monday, March 2, 2026, 2:05\u202fPM UTC"' in html


def test_tabs_are_the_students_first_names_in_alphabetical_order(
    portal: FlaskClient, sign_in_as: SignIn
) -> None:
    sign_in_as()
    html = portal.get("/").get_data(as_text=True)
    assert tabs(html) == ["Adam", "Ben", "Zoe"]
    # The start page shows the primary student (Zoe, at a demo school) with grades.
    assert 'href="/students/100234" title="Zoe Rivera" aria-current="page"' in html
    assert SCHOOLS["WMS"].name in html and "Attendance" in html


def test_a_tab_shows_that_students_grades_and_attendance(portal: FlaskClient, sign_in_as: SignIn) -> None:
    sign_in_as()
    response = portal.get("/students/100235")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'aria-current="page">Adam<' in html
    assert "Adam Rivera" in html and SCHOOLS["LES"].name in html
    for course in SCHOOLS["LES"].courses:
        assert f"<td>{course}</td>" in html
    assert NOT_AVAILABLE not in html
    # The same numbers on every visit.
    again = portal.get("/students/100235").get_data(as_text=True)
    assert without_csrf_token(again) == without_csrf_token(html)


def test_a_student_the_portal_has_no_data_for(portal: FlaskClient, sign_in_as: SignIn) -> None:
    sign_in_as()
    html = portal.get("/students/900001").get_data(as_text=True)
    assert NOT_AVAILABLE in html and "<h2>Grades</h2>" not in html
    assert "export.xml" not in html
    assert NOT_AVAILABLE in portal.get("/students/900001/print").get_data(as_text=True)
    download = portal.get("/students/900001/export.xml")
    assert download.status_code == 404 and NOT_AVAILABLE in download.get_data(as_text=True)


def test_students_not_in_the_session_are_not_found(portal: FlaskClient, sign_in_as: SignIn) -> None:
    sign_in_as()
    for path in ("/students/100310", "/students/100310/print", "/students/100310/export.xml"):
        assert portal.get(path).status_code == 404


def test_printer_friendly_view(portal: FlaskClient, sign_in_as: SignIn) -> None:
    sign_in_as()
    response = portal.get("/students/100234/print")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "print.css" in html and 'id="print"' in html
    assert "Zoe Rivera" in html and SCHOOLS["WMS"].courses[0] in html
    assert 'class="tabs"' not in html and "Sign Out" not in html


def test_xml_download_of_grades_and_attendance(portal: FlaskClient, sign_in_as: SignIn) -> None:
    sign_in_as()
    response = portal.get("/students/100234/export.xml")
    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="student-100234-grades-attendance.xml"'
    )
    assert response.headers["Cache-Control"] == "no-store"
    root = ET.fromstring(response.data)  # noqa: S314 (our own output)
    assert root.get("id") == "100234" and root.findtext("school") == SCHOOLS["WMS"].name
    assert len(root.findall("grades/course")) == len(SCHOOLS["WMS"].courses)


def test_help_page(portal: FlaskClient, sign_in_as: SignIn) -> None:
    assert "Help" in portal.get("/help").get_data(as_text=True)
    sign_in_as()
    html = portal.get("/help").get_data(as_text=True)
    assert "Welcome, Dana Rivera" in text_of(html) and "15 minutes" in html


def test_the_session_cookie_is_http_only_lax_and_only_its_hash_is_stored(
    portal: FlaskClient, portal_app: Flask
) -> None:
    with portal.session_transaction() as session:
        session["pending"] = "x"
    cookie = portal.get_cookie("rp_session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    (row,) = stored_sessions(portal_app)
    assert row.id_hash == hashlib.sha256(cookie.value.encode()).hexdigest()


def test_sign_out_needs_the_forms_csrf_token(portal: FlaskClient, sign_in_as: SignIn) -> None:
    sign_in_as()
    refused = portal.post("/logout")
    assert refused.status_code == 400 and "reload it" in refused.get_data(as_text=True)
    # Still signed in.
    assert "Welcome, Dana Rivera" in text_of(portal.get("/").get_data(as_text=True))


def test_idle_timeout_signs_out_with_a_link_back_to_the_sign_in_page(
    portal: FlaskClient, sign_in_as: SignIn, clock: FrozenClock, portal_app: Flask
) -> None:
    sign_in_as()
    clock.advance(timedelta(seconds=899))
    assert portal.get("/students/100234").status_code == 200  # a request restarts the idle time
    clock.advance(timedelta(seconds=899))
    assert portal.get("/").status_code == 200
    clock.advance(timedelta(seconds=900))
    html = portal.get("/students/100234").get_data(as_text=True)
    assert "You have been signed out. Return to Sign In Page." in text_of(html)
    assert '<a href="/">Return to Sign In Page.</a>' in html
    assert stored_sessions(portal_app) == []
    assert portal.get_cookie("rp_session") is None
    # The link leads to the sign-in page.
    assert 'id="sign-in"' in portal.get("/").get_data(as_text=True)


def test_the_last_page_viewed_is_remembered_in_a_signed_cookie(
    portal: FlaskClient, sign_in_as: SignIn, portal_app: Flask
) -> None:
    sign_in_as()
    portal.get("/students/100235")
    cookie = portal.get_cookie("rp_last_page")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    last_pages = portal_app.extensions["relying_party_demo"].last_pages
    assert last_pages.load(cookie.value, "account-1") == "/students/100235"
    assert last_pages.load(cookie.value, "account-2") is None  # another user of this browser
    assert last_pages.load(cookie.value[:-2] + "xx", "account-1") is None  # not our signature
    # The start page is not worth offering again: the cookie keeps the student page.
    portal.get("/")
    assert portal.get_cookie("rp_last_page") == cookie


def test_security_headers(portal: FlaskClient) -> None:
    response = portal.get("/")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_unknown_pages_are_not_found(portal: FlaskClient) -> None:
    response = portal.get("/nope")
    assert response.status_code == 404 and "no such page" in response.get_data(as_text=True)


def test_signing_out_of_a_session_that_went_idle_says_it_already_ended(
    portal: FlaskClient, sign_in_as: SignIn, clock: FrozenClock
) -> None:
    sign_in_as()
    token = re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"', portal.get("/").get_data(as_text=True)
    )
    assert token is not None
    clock.advance(timedelta(seconds=900))
    response = portal.post("/logout", data={"csrf_token": token.group(1)})
    assert "You have been signed out. Return to Sign In Page." in text_of(response.get_data(as_text=True))
