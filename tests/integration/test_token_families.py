"""Token families without HTTP: rotation, reuse, lives and revocation on the real databases."""

from __future__ import annotations

from datetime import timedelta

import pytest

from idp.clock import FrozenClock
from idp.db import new_id
from idp.extensions import db
from idp.oauth.families import RefreshTokenRejected, RefreshTokenReused, TokenFamilyService
from idp.policy import TokenPolicy
from tests.integration.helpers import audit_names


@pytest.fixture
def families(app, clock: FrozenClock) -> TokenFamilyService:
    return TokenFamilyService(db.session, clock=clock, policy=TokenPolicy())


@pytest.fixture
def owner(make_account, make_client):
    return make_account(), make_client(scope="openid offline_access")


def start(families: TokenFamilyService, owner, clock: FrozenClock, *, offline: bool = True):
    account, portal = owner
    started = families.start(
        family_id=new_id(),
        client_id=portal.client_id,
        account_id=account.id,
        authorization_code_id=new_id(),
        sid="sid-1",
        scope="openid offline_access",
        auth_time=clock.now(),
        offline=offline,
    )
    db.session.commit()
    return started


def test_rotation_consumes_the_token_once(families, owner, clock):
    started = start(families, owner, clock)
    found = families.rotate(started.refresh_token, client_id=owner[1].client_id)
    following = families.issue_next(found.family)
    db.session.commit()
    assert following != started.refresh_token
    assert families.find(started.refresh_token).token.rotated_at == clock.now()
    assert families.rotate(following, client_id=owner[1].client_id).family.id == started.family_id


def test_a_rotated_token_presented_again_revokes_the_family(families, owner, clock):
    started = start(families, owner, clock)
    found = families.rotate(started.refresh_token, client_id=owner[1].client_id)
    following = families.issue_next(found.family)
    db.session.commit()
    with pytest.raises(RefreshTokenReused):
        families.rotate(started.refresh_token, client_id=owner[1].client_id)
    db.session.commit()
    assert not families.is_live(started.family_id)
    assert audit_names()[-2:] == ["refresh_token.reused", "refresh_token_family.revoked"]
    with pytest.raises(RefreshTokenRejected, match="revoked"):
        families.rotate(following, client_id=owner[1].client_id)


def test_another_clients_presentation_is_unknown_and_changes_nothing(families, owner, clock, make_client):
    started = start(families, owner, clock)
    other = make_client(name="Other", scope="openid offline_access")
    with pytest.raises(RefreshTokenRejected):
        families.rotate(started.refresh_token, client_id=other.client_id)
    assert families.find(started.refresh_token).token.rotated_at is None
    assert families.is_live(started.family_id)


def test_idle_and_absolute_lives(families, owner, clock):
    policy = TokenPolicy()
    started = start(families, owner, clock)
    clock.advance(policy.refresh_idle + timedelta(seconds=1))
    with pytest.raises(RefreshTokenRejected, match="expired"):
        families.rotate(started.refresh_token, client_id=owner[1].client_id)


def test_without_offline_access_the_family_lives_as_long_as_its_access_tokens(families, owner, clock):
    started = start(families, owner, clock, offline=False)
    assert started.refresh_token is None
    assert families.is_live(started.family_id)


def test_revoking_for_a_code_ends_its_family(families, owner, clock):
    account, portal = owner
    code_id = new_id()
    families.start(
        family_id="f" * 32,
        client_id=portal.client_id,
        account_id=account.id,
        authorization_code_id=code_id,
        sid=None,
        scope="openid",
        auth_time=clock.now(),
        offline=False,
    )
    db.session.commit()
    families.revoke_for_code(code_id, reason="authorization_code_replayed")
    db.session.commit()
    assert not families.is_live("f" * 32)
    assert not families.is_live("no-such-family")


def test_malformed_tokens_are_not_looked_up(families):
    for value in ("", "rt_", "x" * 50, "rt_" + "y" * 200):
        assert families.find(value) is None
