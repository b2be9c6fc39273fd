"""The admin API over HTTP: client-credentials tokens for admin clients only, bearer checks, scopes,
school reach (404, never 403), every endpoint once, and bad input answered as problem details."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.test import TestResponse

from idp.accounts.models import Account, AccountStatus, AccountType
from idp.audit import AuditEvent
from idp.extensions import db
from idp.mail.models import OutboundEmail
from idp.oauth.models import Client
from idp.students.models import GuardianLink, Student
from idp.web.context import services
from tests.admin_fixtures import AdminClient, ask_token, bearer
from tests.functional.oidc import basic_auth
from tests.functional.tokens import sign_in_and_redeem

API = "/admin/api/v1"
PROBLEM = "application/problem+json"


def assert_problem(response: TestResponse, status: int, *, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert body["status"] == status
    assert body["type"].startswith("http://localhost/admin/api/problems/")
    assert body["title"] and body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return dict(body)


@pytest.fixture
def district(make_account: Callable[..., Account], make_student: Callable[..., Student]) -> dict[str, Any]:
    """A parent at school LES, another at school HHS, each with one student."""
    les = make_student(school_code="LES")
    hhs = make_student(school_code="HHS")
    ada = make_account(first_name="Ada", last_name="Lovelace")
    bob = make_account(first_name="Bob", last_name="Babbage")
    guardianship = services().guardianship()
    guardianship.link(ada, les, "Mother")
    guardianship.link(bob, hhs, "Father")
    db.session.commit()
    return {"les": les, "hhs": hhs, "ada": ada, "bob": bob}


# --- the token endpoint -------------------------------------------------------------------------
def test_admin_client_gets_a_short_admin_api_token_without_refresh_token(client, make_admin_client, clock):
    admin = make_admin_client("admin:write")

    response = ask_token(client, admin, "admin:write")

    assert response.status_code == 200, response.get_json()
    token = response.get_json()
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "admin:write"
    assert token["expires_in"] == 600
    assert "refresh_token" not in token and "id_token" not in token
    claims = services().keys.verify(token["access_token"]).claims
    assert claims["aud"] == "http://localhost/admin/api"
    assert claims["sub"] == claims["client_id"] == admin.client_id
    assert claims["exp"] == int(clock.now().timestamp()) + 600
    assert "fid" not in claims
    issued = db.session.execute(
        select(AuditEvent).where(AuditEvent.name == "access_token.issued")
    ).scalar_one()
    assert (issued.client_id, issued.account_id, issued.details["grant_type"]) == (
        admin.client_id,
        None,
        "client_credentials",
    )
    # A write client may ask for less.
    assert ask_token(client, admin, "admin:read").get_json()["scope"] == "admin:read"


def test_client_credentials_are_for_admin_clients_and_their_scope_only(
    client, make_admin_client, make_client
):
    reader = make_admin_client("admin:read")
    portal = make_client()
    as_portal = AdminClient(portal.client_id, portal.client_secret or "")

    assert ask_token(client, as_portal, "admin:read").get_json()["error"] == "unauthorized_client"
    assert ask_token(client, reader, "admin:write").get_json()["error"] == "invalid_scope"
    assert ask_token(client, reader, None).get_json()["error"] == "invalid_scope"
    assert ask_token(client, reader, "openid admin:read").get_json()["error"] == "invalid_scope"
    wrong_secret = AdminClient(reader.client_id, reader.secret + "x")
    assert ask_token(client, wrong_secret, "admin:read").status_code == 401
    # An admin client has no other grant, and never sends a browser to /authorize.
    code_grant = client.post(
        "/token",
        data={"grant_type": "authorization_code", "code": "ac_x", "redirect_uri": "https://x.test/cb"},
        headers=basic_auth(reader.client_id, reader.secret),
    )
    assert code_grant.get_json()["error"] == "unauthorized_client"
    assert (
        db.session.execute(select(Client).where(Client.client_id == reader.client_id))
        .scalar_one()
        .redirect_uris
        == []
    )


def test_admin_and_userinfo_tokens_are_each_refused_at_the_other(
    client, make_admin_client, make_client, make_account
):
    admin = make_admin_client("admin:write")
    admin_headers = bearer(client, admin)
    assert client.get("/userinfo", headers=admin_headers).status_code == 401

    parent = make_account()
    portal = make_client()
    tokens = sign_in_and_redeem(client, portal, parent.username, scope="openid")
    response = client.get(f"{API}/accounts", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert_problem(response, 401)
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


# --- bearer checks and scopes --------------------------------------------------------------------
def test_bearer_token_is_checked_on_every_request(client, make_admin_client, district, clock):
    admin = make_admin_client("admin:write")
    headers = bearer(client, admin)

    missing = client.get(f"{API}/accounts")
    assert_problem(missing, 401)
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="admin-api"'
    garbage = client.get(f"{API}/accounts", headers={"Authorization": "Bearer not.a.token"})
    assert_problem(garbage, 401)
    assert 'error="invalid_token"' in garbage.headers["WWW-Authenticate"]
    assert client.get(f"{API}/accounts", headers=headers).status_code == 200

    # The client's scope lowered to read: its write token stops working at once.
    row = db.session.execute(select(Client).where(Client.client_id == admin.client_id)).scalar_one()
    row.admin_scope = "admin:read"
    db.session.commit()
    assert_problem(client.get(f"{API}/accounts", headers=headers), 401)
    row.admin_scope = "admin:write"
    db.session.commit()

    clock.advance(timedelta(seconds=601))
    assert_problem(client.get(f"{API}/accounts", headers=headers), 401)
    clock.advance(timedelta(seconds=-601))
    services().clients().delete(admin.client_id)
    db.session.commit()
    assert_problem(client.get(f"{API}/accounts", headers=headers), 401)


def test_read_scope_reads_but_cannot_change_anything(client, make_admin_client, district):
    reader = make_admin_client("admin:read")
    headers = bearer(client, reader, "admin:read")
    ada = district["ada"]

    assert client.get(f"{API}/accounts/{ada.id}", headers=headers).status_code == 200
    assert client.get(f"{API}/audit", headers=headers).status_code == 200
    refused = client.post(f"{API}/accounts/{ada.id}/disable", json={"reason": "fraud"}, headers=headers)

    assert_problem(refused, 403)
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    db.session.expire_all()
    assert db.session.get(Account, ada.id).status is AccountStatus.CONFIRMED


def test_school_limited_client_gets_404_for_another_schools_parent(client, make_admin_client, district):
    admin = make_admin_client("admin:write", schools=("LES",))
    headers = bearer(client, admin)
    ada, bob, hhs = district["ada"], district["bob"], district["hhs"]

    assert client.get(f"{API}/accounts/{ada.id}", headers=headers).status_code == 200
    unknown = client.get(f"{API}/accounts/{'0' * 32}", headers=headers)
    other = client.get(f"{API}/accounts/{bob.id}", headers=headers)
    assert assert_problem(other, 404) == assert_problem(unknown, 404)
    assert_problem(
        client.post(f"{API}/accounts/{bob.id}/disable", json={"reason": "x"}, headers=headers), 404
    )
    assert_problem(client.delete(f"{API}/accounts/{bob.id}?reason=x", headers=headers), 404)
    assert_problem(client.get(f"{API}/students/{hhs.sis_id}", headers=headers), 404)
    listed = client.get(f"{API}/accounts", headers=headers).get_json()
    assert [row["id"] for row in listed["items"]] == [ada.id]
    db.session.expire_all()
    assert db.session.get(Account, bob.id).status is AccountStatus.CONFIRMED
    # Removing Ada's only student at LES takes her out of the client's reach.
    les = district["les"]
    assert client.delete(f"{API}/accounts/{ada.id}/students/{les.sis_id}", headers=headers).status_code == 204
    assert_problem(client.get(f"{API}/accounts/{ada.id}", headers=headers), 404)


# --- every endpoint ----------------------------------------------------------------------------
def test_search_pages_by_cursor_and_reads_accounts_and_students(
    client, make_admin_client, district, make_account
):
    headers = bearer(client, make_admin_client())
    make_account(first_name="Cyd", last_name="Charisse")
    ada, les = district["ada"], district["les"]

    first = client.get(f"{API}/accounts?limit=2", headers=headers).get_json()
    assert [row["last_name"] for row in first["items"]] == ["Babbage", "Charisse"]
    second = client.get(f"{API}/accounts?limit=2&cursor={first['next_cursor']}", headers=headers).get_json()
    assert ([row["last_name"] for row in second["items"]], second["next_cursor"]) == (["Lovelace"], None)
    by_student = client.get(f"{API}/accounts?q={les.sis_id}&type=parent&status=active", headers=headers)
    assert [row["id"] for row in by_student.get_json()["items"]] == [ada.id]
    assert by_student.get_json()["items"][0]["students"][0]["sis_id"] == les.sis_id

    account = client.get(f"{API}/accounts/{ada.id}", headers=headers).get_json()
    assert (account["status"], account["type"], account["students"][0]["relationship"]) == (
        "active",
        "parent",
        "Mother",
    )
    student = client.get(f"{API}/students/{les.sis_id}", headers=headers).get_json()
    assert [(a["id"], a["relationship"]) for a in student["accounts"]] == [(ada.id, "Mother")]


def test_account_actions_change_the_account_and_are_audited_as_the_client(
    client, make_admin_client, district
):
    admin = make_admin_client()
    headers = bearer(client, admin)
    ada = district["ada"]
    url = f"{API}/accounts/{ada.id}"

    assert client.post(f"{url}/disable", json={"reason": "Custody order"}, headers=headers).get_json()[
        "status"
    ] == ("disabled")
    assert client.post(f"{url}/enable", headers=headers).get_json()["status"] == "active"
    assert client.post(f"{url}/unlock", headers=headers).status_code == 200
    expired = client.post(f"{url}/expiry", json={"expires_at": "2099-06-30T00:00:00+02:00"}, headers=headers)
    assert expired.get_json()["expires_at"] == "2099-06-29T22:00:00Z"
    assert (
        client.post(f"{url}/expiry", json={"expires_at": None}, headers=headers).get_json()["expires_at"]
        is None
    )
    assert client.post(f"{url}/test", json={"is_test": True}, headers=headers).get_json()["is_test"] is True
    assert (
        client.post(f"{url}/type", json={"type": "student"}, headers=headers).get_json()["type"] == "student"
    )
    temporary = client.post(f"{url}/temporary-password", headers=headers)
    assert temporary.headers["Cache-Control"] == "no-store"
    assert len(temporary.get_json()["password"]) >= 15
    # Verification mail goes to pending accounts only.
    assert_problem(client.post(f"{url}/resend-verification", headers=headers), 409)

    trail = client.get(
        f"{API}/audit?account={ada.id}&actor=client:{admin.client_id}", headers=headers
    ).get_json()
    assert {item["event"] for item in trail["items"]} >= {
        "account.disabled",
        "account.enabled",
        "account.unlocked",
        "account.expiry_set",
        "account.test_marked",
        "account.type_changed",
        "password.set_temporary",
    }


def test_resend_verification_unlink_and_delete(client, make_admin_client, district, make_account):
    headers = bearer(client, make_admin_client())
    pending = make_account(status=AccountStatus.PENDING)
    ada, les = district["ada"], district["les"]

    assert client.post(f"{API}/accounts/{pending.id}/resend-verification", headers=headers).status_code == 200
    unlinked = client.delete(f"{API}/accounts/{ada.id}/students/{les.sis_id}", headers=headers)
    assert (unlinked.status_code, unlinked.data) == (204, b"")
    assert client.get(f"{API}/accounts/{ada.id}", headers=headers).get_json()["students"] == []
    deleted = client.delete(f"{API}/accounts/{ada.id}", json={"reason": "Left the district"}, headers=headers)

    assert deleted.get_json() == {
        "account_id": ada.id,
        "ended_sessions": 0,
        "revoked_grants": 0,
        "unlinked_students": 0,
        "notified": True,
    }
    purposes = set(db.session.execute(select(OutboundEmail.purpose)).scalars())
    assert {"email_verification", "student_removed", "account_deleted"} <= purposes
    assert db.session.get(Account, ada.id) is None
    assert_problem(client.get(f"{API}/accounts/{ada.id}", headers=headers), 404)


# --- bad input ----------------------------------------------------------------------------------
def test_bad_input_is_a_problem_and_changes_nothing(client, make_admin_client, district):
    headers = bearer(client, make_admin_client())
    ada = district["ada"]
    url = f"{API}/accounts/{ada.id}"

    def post(path: str, **kwargs: Any) -> TestResponse:
        return client.post(f"{url}/{path}", headers=headers, **kwargs)

    assert_problem(post("disable", data=b"{not json", content_type="application/json"), 400)
    assert_problem(post("disable", data=b'{"reason": "\xff\xfe"}', content_type="application/json"), 400)
    assert_problem(post("disable", data=b'["reason"]', content_type="application/json"), 400)
    assert_problem(post("disable", data=b"reason=x", content_type="application/x-www-form-urlencoded"), 415)
    assert_problem(post("disable", data=b"[" * 100_000, content_type="application/json"), 413)
    assert_problem(post("disable", json={"reason": "x", "admin": True}), 422, field="admin")
    assert_problem(post("disable", json={}), 422, field="reason")
    assert_problem(post("disable", json={"reason": 7}), 422, field="reason")
    assert_problem(post("disable", json={"reason": "x" * 5000}), 422, field="reason")
    assert_problem(post("disable", json={"reason": "a\u0000b"}), 422, field="reason")
    assert_problem(post("test", json={"is_test": "yes"}), 422, field="is_test")
    assert_problem(post("type", json={"type": "staff"}), 422, field="type")
    assert_problem(post("expiry", json={"expires_at": "2099-06-30T00:00:00"}), 422, field="expires_at")
    assert_problem(post("expiry", json={"expires_at": "9999-12-31T23:59:59-14:00"}), 422, field="expires_at")
    assert_problem(client.delete(url, headers=headers), 422, field="reason")
    assert_problem(client.get(f"{API}/accounts?q={'%25_' * 200}", headers=headers), 400, field="q")
    assert_problem(client.get(f"{API}/accounts?limit=0", headers=headers), 400, field="limit")
    assert_problem(client.get(f"{API}/accounts?status=asleep", headers=headers), 400, field="status")
    assert_problem(client.get(f"{API}/accounts?cursor=%C3%28", headers=headers), 400, field="cursor")
    assert_problem(client.get(f"{API}/audit?since=2024-13-01", headers=headers), 400, field="since")
    assert_problem(client.get(f"{API}/audit?cursor=abc", headers=headers), 400, field="cursor")
    wildcards = client.get(f"{API}/accounts?q=%25%25%25", headers=headers)
    assert wildcards.status_code == 200 and wildcards.get_json()["items"] == []
    assert_problem(client.get(f"{API}/nowhere", headers=headers), 404)
    not_allowed = client.put(url, headers=headers)
    assert_problem(not_allowed, 405)
    assert set(not_allowed.headers["Allow"].split(", ")) >= {"GET", "DELETE"}
    db.session.expire_all()
    account = db.session.get(Account, ada.id)
    assert (account.status, account.is_test_account, account.type, account.expires_at) == (
        AccountStatus.CONFIRMED,
        False,
        AccountType.PARENT,
        None,
    )
    assert (
        db.session.execute(select(GuardianLink).where(GuardianLink.account_id == ada.id)).first() is not None
    )


def test_openapi_document_is_public_and_describes_every_endpoint(client):
    document = client.get("/admin/api/openapi.json").get_json()

    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": "http://localhost/admin/api/v1"}]
    flows = document["components"]["securitySchemes"]["oauth2"]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == "http://localhost/token"
    routes = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    served = {
        (method, rule.rule.removeprefix(API).replace("<", "{").replace(">", "}"))
        for rule in client.application.url_map.iter_rules()
        if rule.rule.startswith(API + "/")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert routes == served
    problem = client.get("/admin/api/problems/not-found").get_json()
    assert problem == {
        "type": "http://localhost/admin/api/problems/not-found",
        "title": "Not found",
        "status": 404,
    }
