"""The access log keeps the shape of each request and none of the secrets its URL carries."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from gunicorn.config import Config

from idp.web.access_log import RedactingLogger

RESET = "rc_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"


def access_line(method: str, uri: str, **headers: str) -> str:
    config = Config()
    config.set("accesslog", "-")
    logger = RedactingLogger(config)
    path, _, query = uri.partition("?")
    environ = {
        "REQUEST_METHOD": method,
        "RAW_URI": uri,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.9",
        **{f"HTTP_{name.upper()}": value for name, value in headers.items()},
    }
    response = SimpleNamespace(status="200 OK", sent=10, headers=[])
    request = SimpleNamespace(headers=[(name.upper(), value) for name, value in headers.items()])
    atoms = logger.atoms(response, request, environ, timedelta(milliseconds=5))
    return str(logger.cfg.access_log_format % atoms)


def test_a_reset_link_and_its_referer_keep_no_token():
    line = access_line("POST", f"/reset/{RESET}", referer=f"https://idp.example/reset/{RESET}")

    assert RESET not in line
    assert "POST /reset/… HTTP/1.1" in line and "https://idp.example/reset/…" in line


def test_query_values_are_dropped_and_their_names_kept():
    line = access_line("GET", "/logout?id_token_hint=eyJhbGciOi.payload.sig&state=af0ifjsldkj")

    assert "eyJhbGciOi" not in line and "af0ifjsldkj" not in line
    assert "GET /logout?id_token_hint=…&state=… HTTP/1.1" in line


def test_an_ordinary_request_is_logged_as_it_was():
    line = access_line("GET", "/signin", user_agent="Mozilla/5.0")

    assert '"GET /signin HTTP/1.1" 200' in line and "203.0.113.9" in line and "Mozilla/5.0" in line
