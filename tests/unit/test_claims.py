"""User data never overwrites the claims a token owns."""

from __future__ import annotations

from idp.oauth.claims import RESERVED_CLAIMS, SCOPE_CLAIMS, claims_supported, without_reserved


def test_without_reserved_drops_token_claims_and_keeps_user_claims():
    claims = {
        "iss": "https://evil.example",
        "aud": "someone-else",
        "exp": 9_999_999_999,
        "iat": 0,
        "nbf": 0,
        "sub": "not-the-account",
        "nonce": "replayed",
        "auth_time": 0,
        "azp": "x",
        "sid": "x",
        "at_hash": "x",
        "name": "Dana Rivera",
        "email": "dana@example.org",
        "students": [{"id": "100234"}],
    }

    assert without_reserved(claims) == {
        "name": "Dana Rivera",
        "email": "dana@example.org",
        "students": [{"id": "100234"}],
    }


def test_no_scope_releases_a_reserved_claim_other_than_sub():
    released = {claim for claims in SCOPE_CLAIMS.values() for claim in claims}

    assert released & RESERVED_CLAIMS == {"sub"}


def test_claims_supported_lists_every_scope_claim():
    supported = set(claims_supported())

    for claims in SCOPE_CLAIMS.values():
        assert set(claims) <= supported
    assert {"student_ids", "students", "primary_student_id", "last_login_at"} <= supported
