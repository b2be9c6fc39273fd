"""ClientService on the real databases: secrets shown once, stored hashed, rotated, deleted."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy import select, text

from idp.extensions import db
from idp.oauth.clients import ClientService, ClientSpec, InvalidClientSettings, UnknownClient
from idp.oauth.models import Client
from tests.integration.helpers import audit_names, count

CALLBACK = "https://portal.example.test/callback"


def spec(**fields: Any) -> ClientSpec:
    values: dict[str, Any] = {"name": "Lincoln Portal", "redirect_uris": [CALLBACK]}
    values.update(fields)
    return ClientSpec(**values)


def stored(client_id: str) -> Client:
    db.session.commit()
    db.session.expire_all()
    return db.session.execute(select(Client).where(Client.client_id == client_id)).scalar_one()


def test_confidential_client_gets_a_secret(app):
    registered = ClientService(db.session).create(spec())

    assert registered.client_secret and registered.client_secret.startswith("cs_")
    row = stored(registered.client.client_id)
    assert (row.is_public, row.require_pkce, row.scope) == (False, True, "openid profile email students")
    assert row.check_client_secret(registered.client_secret)
    assert "client.created" in audit_names()


def test_public_client_gets_no_secret_and_always_pkce(app):
    registered = ClientService(db.session).create(spec(public=True))

    assert registered.client_secret is None
    row = stored(registered.client.client_id)
    assert (row.is_public, row.secret_hash, row.require_pkce) == (True, None, True)
    assert not row.check_client_secret("")


def test_allow_no_pkce_exempts_a_confidential_client(app):
    registered = ClientService(db.session).create(spec(allow_no_pkce=True))

    assert stored(registered.client.client_id).require_pkce is False


def test_secret_is_stored_only_as_its_sha256(app):
    registered = ClientService(db.session).create(spec())
    secret = registered.client_secret
    assert secret

    row = stored(registered.client.client_id)
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    raw = db.session.execute(text("SELECT * FROM oauth_client")).mappings().one()
    assert not [column for column, value in raw.items() if secret in str(value)]
    assert not row.check_client_secret(secret + "x")


def test_update_rotates_the_secret(app):
    clients = ClientService(db.session)
    first = clients.create(spec(client_id="lincoln"))
    db.session.commit()

    second = clients.update(stored("lincoln"), spec(name="Lincoln Portal 2"))

    row = stored("lincoln")
    assert second.client_secret and second.client_secret != first.client_secret
    assert row.check_client_secret(second.client_secret)
    assert not row.check_client_secret(first.client_secret or "")
    assert row.name == "Lincoln Portal 2"
    assert "client.secret_rotated" in audit_names()


def test_duplicate_client_id_is_refused(app):
    clients = ClientService(db.session)
    clients.create(spec(client_id="lincoln"))

    with pytest.raises(InvalidClientSettings, match="lincoln"):
        clients.create(spec(client_id="lincoln"))


def test_invalid_settings_store_nothing(app):
    with pytest.raises(InvalidClientSettings):
        ClientService(db.session).create(spec(redirect_uris=[CALLBACK + "#x"]))

    db.session.rollback()
    assert count(Client) == 0


def test_scope_is_stored_without_duplicates(app):
    registered = ClientService(db.session).create(spec(scope="openid  profile openid offline_access"))

    assert stored(registered.client.client_id).scope == "openid profile offline_access"


def test_delete_removes_the_client(app):
    clients = ClientService(db.session)
    clients.create(spec(client_id="lincoln"))
    db.session.commit()

    clients.delete("lincoln")
    db.session.commit()

    assert clients.find("lincoln") is None
    assert "client.deleted" in audit_names()


def test_delete_of_an_unknown_id_raises_unknown_client(app):
    with pytest.raises(UnknownClient):
        ClientService(db.session).delete("no-such-client")
