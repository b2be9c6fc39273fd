"""The parts of the request log and of /metrics that need no app: request ids, the paths logged,
who may read the metrics, how a sign-in's outcome is named, and their settings."""

from __future__ import annotations

from datetime import timedelta
from ipaddress import ip_network
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from idp.audit import AuditEvent
from idp.config import ConfigError, Settings
from idp.metrics import may_read_metrics
from idp.web.access_log import RedactingLogger, loggable_path, request_id_from
from idp.web.metrics import signin_outcome

TOKEN = "metrics-token-0123456789abcdef"
OFFICE = (ip_network("10.20.0.0/16"), ip_network("2001:db8::/32"))


def test_a_plain_request_id_is_kept_and_any_other_is_replaced():
    assert request_id_from("lb-7f3a.91:2_x") == "lb-7f3a.91:2_x"
    made = {request_id_from(value) for value in (None, "", "two words", "a" * 129, "é", "x\ny", "<script>")}
    assert len(made) == 7 and all(len(value) == 32 for value in made)


def test_secret_route_variables_and_secret_segments_are_replaced():
    token = "rc_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
    assert loggable_path(f"/reset/{token}", {"token": token}) == "/reset/…"
    assert loggable_path("/authorize/continue/pr_abc", {"request_id": "pr_abc"}) == "/authorize/continue/…"
    assert loggable_path(f"/reset/{token}/more", None) == "/reset/…/more"  # no route matched
    assert loggable_path("/admin/accounts/a1b2", {"account_id": "a1b2"}) == "/admin/accounts/a1b2"
    assert len(loggable_path("/" + "x" * 5000, None)) == 512


@pytest.mark.parametrize(
    ("authorization", "client", "allowed"),
    [
        (f"Bearer {TOKEN}", "198.51.100.7", True),
        (f"BEARER {TOKEN}", None, True),
        (None, "10.20.3.4", True),
        (None, "::ffff:10.20.3.4", True),
        (None, "2001:db8::5", True),
        (None, "10.21.0.1", False),
        (None, "not an address", False),
        (None, None, False),
        (f"Bearer {TOKEN}x", "198.51.100.7", False),
        (f"Basic {TOKEN}", "198.51.100.7", False),
        ("Bearer", "198.51.100.7", False),
    ],
)
def test_metrics_are_for_the_token_and_the_listed_networks(
    authorization: str | None, client: str | None, allowed: bool
):
    addresses = (client,)
    assert (
        may_read_metrics(token=TOKEN, allow=OFFICE, authorization=authorization, addresses=addresses)
        is allowed
    )


def test_without_a_token_no_header_opens_metrics():
    assert not may_read_metrics(token=None, allow=(), authorization="Bearer ", addresses=["127.0.0.1"])
    assert not may_read_metrics(token=None, allow=(), authorization="Bearer None", addresses=["127.0.0.1"])


def test_every_address_of_a_request_must_be_listed():
    assert may_read_metrics(
        token=None, allow=OFFICE, authorization=None, addresses=["10.20.0.1", "10.20.0.2"]
    )
    # A client forging X-Forwarded-For, or a public client behind a listed proxy.
    assert not may_read_metrics(
        token=None, allow=OFFICE, authorization=None, addresses=["10.20.0.1", "192.0.2.1"]
    )
    assert not may_read_metrics(token=None, allow=OFFICE, authorization=None, addresses=[])


def event(name: str, **details: str) -> AuditEvent:
    return AuditEvent(name=name, details=details)


@pytest.mark.parametrize(
    ("status", "events", "outcome"),
    [
        (303, [event("signin.succeeded")], "success"),
        (303, [event("signin.password_change_required")], "password_change_required"),
        (200, [event("signin.failed"), event("signin.failed")], "failure"),
        (200, [event("signin.refused", reason="locked")], "locked"),
        (
            200,
            [event("signin.failed"), event("account.locked"), event("signin.refused", reason="locked")],
            "locked",
        ),
        (200, [event("signin.refused", reason="disabled")], "refused"),
        (200, [], "invalid"),
        (429, [], "rate_limited"),
        (503, [], "busy"),
    ],
)
def test_a_sign_in_outcome_is_named_once_per_request(status: int, events: list[AuditEvent], outcome: str):
    assert signin_outcome(status, events) == outcome


def test_logs_are_json_in_production_and_text_elsewhere():
    production = {
        "IDP_ENV": "production",
        "IDP_ISSUER": "https://idp.example.org",
        "IDP_REDIS_URL": "redis://redis:6379/0",
        "IDP_SECRET_KEY": "s" * 40,
        "IDP_SMTP_URL": "smtp://mail:25",
    }
    assert Settings.from_env(production).log_format == "json"
    assert Settings.from_env({**production, "IDP_LOG_FORMAT": "text"}).log_format == "text"
    assert Settings.from_env({}).log_format == "text"
    with pytest.raises(ConfigError, match="IDP_LOG_FORMAT"):
        Settings.from_env({"IDP_LOG_FORMAT": "xml"})


def test_metrics_settings_are_read_and_checked():
    default = Settings.from_env({})
    assert default.metrics_token is None
    assert [str(net) for net in default.metrics_allow] == ["127.0.0.1/32", "::1/128"]
    given = Settings.from_env({"IDP_METRICS_ALLOW": "10.0.0.0/8, 192.0.2.7 ,", "IDP_METRICS_TOKEN": TOKEN})
    assert [str(net) for net in given.metrics_allow] == ["10.0.0.0/8", "192.0.2.7/32"]
    assert given.metrics_token == TOKEN
    assert Settings.from_env({"IDP_METRICS_ALLOW": ""}).metrics_allow == ()
    with pytest.raises(ConfigError, match="IDP_METRICS_ALLOW"):
        Settings.from_env({"IDP_METRICS_ALLOW": "10.0.0.300"})
    with pytest.raises(ConfigError, match="IDP_METRICS_TOKEN"):
        Settings.from_env({"IDP_METRICS_TOKEN": "short"})
    assert Settings.from_env({}).worker_metrics_port == 0
    assert Settings.from_env({"IDP_WORKER_METRICS_PORT": "9464"}).worker_metrics_port == 9464
    with pytest.raises(ConfigError, match="IDP_WORKER_METRICS_PORT"):
        Settings.from_env({"IDP_WORKER_METRICS_PORT": "70000"})


# --- the demo portal's gunicorn access log ---------------------------------------------------
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
