"""Fresh claims: what the portal keeps of the token response, and how userinfo's claims merge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from relying_party_demo.freshness import ClaimsRefused, HeldTokens, merged_claims

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def test_claims_are_stale_after_one_minute() -> None:
    held = HeldTokens.from_response({"access_token": "at", "expires_in": 600, "refresh_token": "rt"}, NOW)
    assert not held.stale(NOW + timedelta(seconds=59))
    assert held.stale(NOW + timedelta(seconds=60))
    assert held.usable(NOW + timedelta(minutes=9)) and not held.usable(NOW + timedelta(minutes=10))


def test_a_refresh_without_a_new_refresh_token_keeps_the_old_one() -> None:
    first = HeldTokens.from_response({"access_token": "at", "expires_in": 600, "refresh_token": "rt"}, NOW)
    second = HeldTokens.from_response({"access_token": "at2", "expires_in": 600}, NOW, previous=first)
    assert second.refresh_token == "rt" and second.access_token == "at2"
    assert HeldTokens.load(second.dump()) == second


@pytest.mark.parametrize(
    "stored", [None, "x", {}, {"access_token": "a", "expires_at": "soon", "claims_at": 1}]
)
def test_unreadable_stored_tokens_are_none(stored: object) -> None:
    assert HeldTokens.load(stored) is None


def test_userinfo_replaces_the_students_and_keeps_the_id_tokens_own_claims() -> None:
    current = {"sub": "a-1", "sid": "s-1", "nonce": "n", "students": [{"id": "1"}], "given_name": "Ada"}
    fresh = merged_claims(
        current, {"sub": "a-1", "students": [{"id": "1"}, {"id": "2"}], "given_name": "Adaeze"}, "a-1"
    )
    assert fresh == {
        "sub": "a-1",
        "sid": "s-1",
        "nonce": "n",
        "students": [{"id": "1"}, {"id": "2"}],
        "given_name": "Adaeze",
    }


def test_userinfo_about_someone_else_is_refused() -> None:
    with pytest.raises(ClaimsRefused):
        merged_claims({"sub": "a-1"}, {"sub": "a-2", "students": []}, "a-1")
