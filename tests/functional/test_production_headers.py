"""Production's transport headers: HSTS on every answer, and from trusted proxies only the
client's address and protocol, never the host."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from idp.audit import AuditEvent
from idp.config import Settings
from idp.extensions import db
from tests.conftest import AppCache, csrf_token, settings_for_tests

ISSUER = "https://idp.example.test"
ONE_YEAR = 31_536_000


@pytest.fixture
def settings(database_url: str, keys_dir: Path) -> Settings:
    return settings_for_tests(
        database_url,
        keys_dir,
        env="production",
        issuer=ISSUER,
        trusted_proxies=1,
        smtp_url="smtp://127.0.0.1:2525",
    )


@pytest.fixture
def https_client(app: Flask):
    return app.test_client()


def get(client, path: str, **headers: str):
    return client.get(path, base_url=ISSUER, headers=headers)


@pytest.mark.parametrize(
    "path", ["/signin", "/.well-known/openid-configuration", "/jwks.json", "/no-such-page"]
)
def test_every_answer_in_production_carries_hsts_of_a_year(https_client, path):
    response = get(https_client, path)

    assert response.headers["Strict-Transport-Security"] == f"max-age={ONE_YEAR}"


def test_include_subdomains_is_opt_in(settings, _apps: AppCache, clock):
    app = _apps.get(replace(settings, hsts_include_subdomains=True, hsts_seconds=2 * ONE_YEAR), clock)

    with app.app_context():
        response = app.test_client().get("/.well-known/openid-configuration", base_url=ISSUER)

    assert response.headers["Strict-Transport-Security"] == f"max-age={2 * ONE_YEAR}; includeSubDomains"


def test_development_sends_no_hsts(settings, _apps: AppCache, clock):
    app = _apps.get(replace(settings, env="development", issuer="http://localhost"), clock)

    with app.app_context():
        response = app.test_client().get("/signin")

    assert "Strict-Transport-Security" not in response.headers


def test_the_host_comes_from_the_issuer_never_from_x_forwarded_host(https_client):
    # Flask-WTF compares the Referer with the request's own host: a forged host would make a
    # foreign page's post look like ours.
    page = get(https_client, "/signin")
    forged = https_client.post(
        "/signin",
        base_url=ISSUER,
        data={"csrf_token": csrf_token(page.get_data(as_text=True)), "username": "x", "password": "y"},
        headers={"Referer": "https://evil.example/signin", "X-Forwarded-Host": "evil.example"},
    )

    assert forged.status_code == 400
    assert "did not come from this site" in forged.get_data(as_text=True)
    discovery = get(https_client, "/.well-known/openid-configuration", **{"X-Forwarded-Host": "evil.example"})
    assert "evil.example" not in discovery.get_data(as_text=True)


def test_the_client_address_and_protocol_come_from_the_trusted_proxy(https_client):
    def post_behind_proxy(referer: str):
        page = https_client.get("/signin", base_url="http://idp.example.test")
        return https_client.post(
            "/signin",
            base_url="http://idp.example.test",
            data={
                "csrf_token": csrf_token(page.get_data(as_text=True)),
                "username": "nobody",
                "password": "y",
            },
            headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "Referer": referer},
        )

    # Flask-WTF checks the Referer of HTTPS requests only: refused, so the protocol was taken.
    assert post_behind_proxy("https://evil.example/signin").status_code == 400
    assert post_behind_proxy(f"{ISSUER}/signin").status_code == 200
    db.session.rollback()
    event = db.session.execute(select(AuditEvent).where(AuditEvent.name == "signin.failed")).scalar_one()
    assert event.ip_address == "203.0.113.9"


def test_a_link_from_another_site_is_followed_and_a_post_without_referer_is_accepted(https_client):
    # Pages say Referrer-Policy: no-referrer, so browsers send no Referer with a form post; a
    # visitor arriving from another site's link sends that site's.
    arriving = https_client.get("/signin", base_url=ISSUER, headers={"Referer": "https://school.example/"})
    assert arriving.status_code == 200
    posted = https_client.post(
        "/signin",
        base_url=ISSUER,
        data={"csrf_token": csrf_token(arriving.get_data(as_text=True)), "username": "x", "password": "y"},
    )
    assert posted.status_code == 200  # the form again, with its message: not a CSRF refusal
    assert "did not come from this site" not in posted.get_data(as_text=True)
