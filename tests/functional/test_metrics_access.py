"""/metrics answers a bearer of IDP_METRICS_TOKEN or a client in IDP_METRICS_ALLOW, and no one else."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest
from flask import Flask

from idp.config import Settings
from tests.conftest import settings_for_tests

TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def settings(database_url: str, keys_dir: Path) -> Settings:
    return settings_for_tests(
        database_url,
        keys_dir,
        metrics_token=TOKEN,
        metrics_allow=(ip_network("203.0.113.0/24"),),
        trusted_proxies=1,  # one proxy's X-Forwarded-For names the client
    )


def scrape(
    app: Flask, *, address: str = "127.0.0.1", authorization: str | None = None, forwarded_for: str = ""
) -> int:
    headers = {"Authorization": authorization} if authorization else {}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    response = app.test_client().get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": address})
    if response.status_code == 200:
        assert "# TYPE idp_signin_duration_seconds histogram" in response.get_data(as_text=True)
    else:
        assert "idp_" not in response.get_data(as_text=True)
    return response.status_code


def test_the_token_opens_metrics_to_any_address(app: Flask):
    assert scrape(app, authorization=f"Bearer {TOKEN}") == 200
    assert scrape(app, address="198.51.100.7", authorization=f"bearer {TOKEN}") == 200


def test_a_listed_network_needs_no_token(app: Flask):
    assert scrape(app, address="203.0.113.77") == 200
    assert scrape(app, address="::ffff:203.0.113.77") == 200


def test_anyone_else_is_refused(app: Flask):
    assert scrape(app) == 403  # loopback is not in this district's list
    assert scrape(app, address="198.51.100.7") == 403
    assert scrape(app, authorization=f"Bearer {TOKEN[:-1]}") == 403
    assert scrape(app, authorization=f"Basic {TOKEN}") == 403
    assert scrape(app, authorization="Bearer ") == 403


def test_both_the_peer_and_the_client_a_proxy_names_must_be_listed(app: Flask):
    # Prometheus on the listed network, through a proxy also on it.
    assert scrape(app, address="203.0.113.9", forwarded_for="203.0.113.5") == 200
    # A public client behind that proxy.
    assert scrape(app, address="203.0.113.9", forwarded_for="198.51.100.7") == 403
    # A process that reaches the instance directly and forges the header.
    assert scrape(app, address="198.51.100.7", forwarded_for="203.0.113.5") == 403
