"""The portal in Spanish: ``?lang=``, its cookie, Accept-Language; pages, records and errors."""

from __future__ import annotations

import html

from flask.testing import FlaskClient

from tests.rp.conftest import SignIn
from tests.rp.test_pages import text_of


def page_text(portal: FlaskClient, path: str, **headers: str) -> str:
    return text_of(html.unescape(portal.get(path, headers=headers).get_data(as_text=True)))


def test_lang_in_the_query_shows_spanish_and_is_remembered(portal: FlaskClient) -> None:
    chosen = portal.get("/?lang=es")
    later = page_text(portal, "/help")

    page = html.unescape(chosen.get_data(as_text=True))
    assert '<html lang="es">' in page
    assert ">Iniciar sesión<" in page and ">Sign In<" not in page
    assert "portal_lang=es" in chosen.headers["Set-Cookie"]
    # Each language by its own name; the current one is not a link.
    assert '<a lang="en" hreflang="en" href="?lang=en">English</a>' in page
    assert '<span lang="es" aria-current="true">Español</span>' in page
    assert "ID de acceso" in later and "Access ID" not in later


def test_accept_language_picks_the_portals_language(portal: FlaskClient) -> None:
    assert "Portal Escolar de Demostración" in page_text(portal, "/", **{"Accept-Language": "es-MX,es;q=0.8"})
    assert "Demo School Portal" in page_text(portal, "/", **{"Accept-Language": "fr, en;q=0.5"})


def test_a_student_page_in_spanish_translates_the_record_but_not_the_names(
    portal: FlaskClient, sign_in_as: SignIn
) -> None:
    sign_in_as()
    portal.set_cookie("portal_lang", "es")
    text = page_text(portal, "/students/100234")

    assert "Bienvenido(a), Dana Rivera" in text
    assert "Calificaciones" in text and "Asistencia" in text and "Semestre 1" in text
    assert "Matemáticas" in text and "Mathematics" not in text
    assert "Versión para imprimir" in text and "Cerrar sesión" in text
    assert "Zoe" in text  # names of people stay as they are
    for english in ("Grades", "Attendance", "Printer-friendly", "Sign Out", "Welcome"):
        assert english not in text


def test_errors_are_in_spanish(portal: FlaskClient, sign_in_as: SignIn) -> None:
    sign_in_as()
    portal.set_cookie("portal_lang", "es")
    missing = portal.get("/no-such-page")
    assert missing.status_code == 404
    assert "Esta página no existe." in text_of(html.unescape(missing.get_data(as_text=True)))
