"""Admin API clients on the real databases: registered by ``idp clients create --admin-scope``,
limited to schools by ``--school``, and kept to the client credentials grant."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import select

from idp.admin.api_clients import UnknownSchool
from idp.admin.models import ClientSchool
from idp.extensions import db
from idp.oauth.clients import ClientSpec, InvalidClientSettings
from idp.oauth.models import Client
from idp.web.context import services
from tests.integration.helpers import count


def admin_spec(scope: str) -> ClientSpec:
    return ClientSpec(name="Sync", redirect_uris=[], admin_scope=scope)


@pytest.fixture
def idp(app: Flask) -> Any:
    runner = app.test_cli_runner()

    def run(*args: str) -> Result:
        result = runner.invoke(args=list(args))
        db.session.rollback()
        db.session.expire_all()
        return result

    return run


def test_cli_registers_a_school_limited_admin_client(idp, make_student):
    make_student(school_code="LES")
    make_student(school_code="HHS")

    result = idp(
        "clients", "create", "--name", "SIS sync", "--admin-scope", "admin:read", "--school", "LES", "--json"
    )

    assert result.exit_code == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["client_secret"].startswith("cs_")
    client = db.session.execute(select(Client).where(Client.client_id == output["client_id"])).scalar_one()
    assert (client.admin_scope, client.redirect_uris, client.is_public) == ("admin:read", [], False)
    assert client.check_client_secret(output["client_secret"])
    assert services().admin_clients().school_codes(client.client_id) == ["LES"]
    listed = json.loads(idp("clients", "list", "--json").stdout)
    assert [c["admin_scope"] for c in listed if c["client_id"] == client.client_id] == ["admin:read"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--admin-scope", "admin:write", "--school", "NOPE"), "no school with code 'NOPE'"),
        (
            ("--admin-scope", "admin:write", "--redirect-uri", "https://x.test/cb"),
            "no redirect or logout URIs",
        ),
        (("--admin-scope", "admin:write", "--public"), "confidential"),
        (("--admin-scope", "admin:write", "--first-party"), "are for portals"),
        (("--admin-scope", "admin:write", "--scope", "openid"), "--scope is for portals"),
        (("--school", "LES", "--redirect-uri", "https://x.test/cb"), "use it with --admin-scope"),
        ((), "at least one --redirect-uri"),
    ],
)
def test_cli_refuses_an_admin_client_it_cannot_register(idp, args, fragment):
    result = idp("clients", "create", "--name", "SIS sync", *args)

    assert result.exit_code != 0
    assert result.stdout == ""
    assert fragment in result.stderr.strip().splitlines()[-1]
    assert count(Client) == 0 and count(ClientSchool) == 0


def test_admin_clients_have_the_client_credentials_grant_and_no_other(app):
    registered = services().admin_clients().register(admin_spec("admin:write"))
    db.session.commit()
    admin, portal = (
        registered.client,
        services()
        .clients()
        .create(ClientSpec(name="Portal", redirect_uris=["https://portal.example.test/cb"]))
        .client,
    )

    assert [
        admin.check_grant_type(g) for g in ("client_credentials", "authorization_code", "refresh_token")
    ] == [
        True,
        False,
        False,
    ]
    assert not admin.check_response_type("code")
    assert not portal.check_grant_type("client_credentials")
    assert [
        admin.allows_admin_scope(s) for s in ("admin:read", "admin:write", "admin:read admin:write", "", None)
    ] == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert admin.get_allowed_scope("admin:read") == "admin:read"


def test_unknown_school_registers_nothing(app):
    with pytest.raises(UnknownSchool):
        services().admin_clients().register(admin_spec("admin:read"), ["LES", "MISSING"])
    with pytest.raises(InvalidClientSettings):
        services().admin_clients().register(admin_spec("admin:delete"))
    db.session.rollback()
    assert count(Client) == 0
