"""What one code exchange writes, and in which transaction (idp.oauth.grants.CodeGrant).

The exchange consumes the code with one statement and stores the family, the refresh token and
the audit event in the same transaction; a refused or replayed exchange writes no second family.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from idp.accounts.models import Account, AccountStatus
from idp.audit import AuditEvent
from idp.extensions import db
from idp.oauth.models import AuthorizationCode, RefreshToken, RefreshTokenFamily
from idp.tokens import secret_hash
from idp.web.context import services
from tests.conftest import AuthRequest
from tests.functional.oidc import authorize_as, redeem

OFFLINE_SCOPE = "openid profile email students offline_access"


@pytest.fixture
def username(make_account) -> str:
    return make_account(username="dana.rivera").username


@pytest.fixture
def portal(make_client):
    return make_client(scope=OFFLINE_SCOPE)


def events(name: str) -> list[AuditEvent]:
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.name == name)).scalars())


def test_exchange_consumes_the_code_and_writes_family_refresh_token_and_audit_event_once(
    client, portal, username, clock
):
    auth = AuthRequest(portal.client_id, scope=OFFLINE_SCOPE)
    code = authorize_as(client, auth, username)["code"]
    response = redeem(client, auth, code, portal.client_secret)
    assert response.status_code == 200
    tokens = response.get_json()
    db.session.expire_all()
    row = db.session.execute(
        select(AuthorizationCode).where(AuthorizationCode.code_hash == secret_hash(code))
    ).scalar_one()
    assert row.used_at == clock.now()
    (family,) = db.session.execute(select(RefreshTokenFamily)).scalars()
    assert (family.authorization_code_id, family.client_id, family.account_id) == (
        row.id,
        portal.client_id,
        row.account_id,
    )
    assert (family.scope, family.sid, family.auth_time) == (row.scope, row.sid, row.auth_time)
    assert family.expires_at == clock.now() + services().token_policy.refresh_token_life
    assert family.revoked_at is None
    (refresh_token,) = db.session.execute(select(RefreshToken)).scalars()
    assert refresh_token.family_id == family.id
    assert refresh_token.token_hash == secret_hash(tokens["refresh_token"])
    assert refresh_token.rotated_at is None
    (issued,) = events("access_token.issued")
    assert (issued.account_id, issued.client_id) == (row.account_id, portal.client_id)
    assert issued.details == {"scope": row.scope, "grant_type": "authorization_code"}


def test_exchange_without_offline_access_opens_a_family_with_no_refresh_token(
    client, make_client, username, clock
):
    portal = make_client()  # not registered for offline_access
    auth = AuthRequest(portal.client_id, scope=OFFLINE_SCOPE)
    code = authorize_as(client, auth, username)["code"]
    response = redeem(client, auth, code, portal.client_secret)
    assert response.status_code == 200
    assert "refresh_token" not in response.get_json()
    (family,) = db.session.execute(select(RefreshTokenFamily)).scalars()
    assert family.expires_at == clock.now() + services().token_policy.access_token_life
    assert db.session.execute(select(func.count()).select_from(RefreshToken)).scalar_one() == 0
    assert len(events("access_token.issued")) == 1


def test_a_replay_writes_no_second_family_and_no_second_issue(client, portal, username):
    auth = AuthRequest(portal.client_id, scope=OFFLINE_SCOPE)
    code = authorize_as(client, auth, username)["code"]
    assert redeem(client, auth, code, portal.client_secret).status_code == 200
    assert redeem(client, auth, code, portal.client_secret).status_code == 400
    assert db.session.execute(select(func.count()).select_from(RefreshTokenFamily)).scalar_one() == 1
    assert db.session.execute(select(func.count()).select_from(RefreshToken)).scalar_one() == 1
    assert len(events("access_token.issued")) == 1
    assert len(events("authorization_code.replayed")) == 1


def test_a_code_presented_by_another_client_is_refused_and_stays_usable(
    client, portal, make_client, username
):
    other = make_client(scope=OFFLINE_SCOPE, redirect_uris=[portal.redirect_uri])
    auth = AuthRequest(portal.client_id, scope=OFFLINE_SCOPE)
    code = authorize_as(client, auth, username)["code"]
    stolen = redeem(client, AuthRequest(other.client_id, verifier=auth.verifier), code, other.client_secret)
    assert stolen.status_code == 400
    assert stolen.get_json()["error"] == "invalid_grant"
    assert redeem(client, auth, code, portal.client_secret).status_code == 200


def disable(username: str) -> None:
    account = db.session.execute(select(Account).where(Account.username == username)).scalar_one()
    account.status = AccountStatus.DISABLED
    db.session.commit()


def test_a_disabled_accounts_code_is_refused_and_stays_unused(client, portal, username):
    auth = AuthRequest(portal.client_id, scope=OFFLINE_SCOPE)
    code = authorize_as(client, auth, username)["code"]
    disable(username)
    response = redeem(client, auth, code, portal.client_secret)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"
    db.session.expire_all()
    row = db.session.execute(
        select(AuthorizationCode).where(AuthorizationCode.code_hash == secret_hash(code))
    ).scalar_one()
    assert row.used_at is None
    assert db.session.execute(select(func.count()).select_from(RefreshTokenFamily)).scalar_one() == 0
    assert events("access_token.issued") == []


def test_a_replay_for_a_disabled_account_still_revokes_the_first_redemption(client, portal, username):
    auth = AuthRequest(portal.client_id, scope=OFFLINE_SCOPE)
    code = authorize_as(client, auth, username)["code"]
    assert redeem(client, auth, code, portal.client_secret).status_code == 200
    disable(username)
    assert redeem(client, auth, code, portal.client_secret).status_code == 400
    db.session.expire_all()
    (family,) = db.session.execute(select(RefreshTokenFamily)).scalars()
    assert family.revoked_reason == "authorization_code_replayed"
    assert len(events("authorization_code.replayed")) == 1
