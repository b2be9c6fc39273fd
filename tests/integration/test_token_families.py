"""Token families without HTTP: rotation, reuse, lives and revocation on the real databases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from idp.clock import FrozenClock
from idp.db import new_id
from idp.extensions import db
from idp.oauth.families import RefreshTokenRejected, RefreshTokenReused, TokenFamilyService, new_refresh_token
from idp.oauth.models import AuthorizationCode
from idp.policy import TokenPolicy
from idp.tokens import secret_hash
from tests.integration.helpers import audit_names


@pytest.fixture
def families(app, clock: FrozenClock) -> TokenFamilyService:
    return TokenFamilyService(db.session, clock=clock, policy=TokenPolicy())


@pytest.fixture
def owner(make_account, make_client):
    return make_account(), make_client(scope="openid offline_access")


@dataclass(frozen=True)
class Started:
    family_id: str
    refresh_token: str | None
    code: AuthorizationCode


def redeemed_code(owner, clock: FrozenClock, scope: str = "openid offline_access") -> AuthorizationCode:
    account, portal = owner
    now = clock.now()
    code = AuthorizationCode(
        code_hash=secret_hash(new_id()),
        client_id=portal.client_id,
        account_id=account.id,
        redirect_uri="https://portal.example.test/callback",
        scope=scope,
        auth_time=now,
        created_at=now,
        expires_at=now + timedelta(minutes=1),
        used_at=now,
        sid="sid-1",
    )
    db.session.add(code)
    db.session.flush()
    return code


def start(families: TokenFamilyService, owner, clock: FrozenClock, *, offline: bool = True) -> Started:
    code = redeemed_code(owner, clock)
    family_id, refresh_token = new_id(), new_refresh_token() if offline else None
    families.start(family_id, code, refresh_token=refresh_token)
    db.session.commit()
    return Started(family_id, refresh_token, code)


def next_token(families: TokenFamilyService, family) -> str:
    value = new_refresh_token()
    families.add_refresh_token(family, value)
    return value


def test_rotation_consumes_the_token_once(families, owner, clock):
    started = start(families, owner, clock)
    found = families.rotate(started.refresh_token, client_id=owner[1].client_id)
    following = next_token(families, found.family)
    db.session.commit()
    assert following != started.refresh_token
    assert families.find(started.refresh_token).token.rotated_at == clock.now()
    assert families.rotate(following, client_id=owner[1].client_id).family.id == started.family_id


def test_a_rotated_token_presented_again_revokes_the_family(families, owner, clock):
    started = start(families, owner, clock)
    found = families.rotate(started.refresh_token, client_id=owner[1].client_id)
    following = next_token(families, found.family)
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


def test_a_replayed_code_ends_its_family(families, owner, clock):
    started = start(families, owner, clock, offline=False)
    families.refuse_replay(started.code)
    assert not families.is_live(started.family_id)
    assert audit_names()[-2:] == ["authorization_code.replayed", "refresh_token_family.revoked"]
    assert not families.is_live("no-such-family")


def test_malformed_tokens_are_not_looked_up(families):
    for value in ("", "rt_", "x" * 50, "rt_" + "y" * 200):
        assert families.find(value) is None
