"""The interaction policy with plain values: which step an authorization request needs next."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from idp.oauth.interaction import (
    AskConsent,
    Asked,
    InvalidInteractionParameter,
    Issue,
    Refuse,
    SignedIn,
    SignIn,
    decide,
    parse_max_age,
    parse_prompts,
)

NOW = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)
DANA = SignedIn("dana", auth_time=NOW - timedelta(minutes=10))
SCOPES = frozenset({"openid", "profile", "students"})
OFFLINE = SCOPES | {"offline_access"}


def next_step(
    *,
    prompt: str = "",
    max_age: int | None = None,
    hint_sub: str | None = None,
    scopes: frozenset[str] = SCOPES,
    signed_in: SignedIn | None = DANA,
    waiting_since: datetime | None = None,
    first_party: bool = True,
    consented: frozenset[str] | None = None,
    consent_given: bool = False,
) -> object:
    asked = Asked(prompts=parse_prompts(prompt), max_age=max_age, hint_sub=hint_sub, scopes=scopes)
    return decide(
        asked,
        signed_in=signed_in,
        waiting_since=waiting_since,
        first_party=first_party,
        consented=consented,
        consent_given=consent_given,
        now=NOW,
    )


# --- sign-in ----------------------------------------------------------------------------------
def test_without_a_session_the_user_signs_in() -> None:
    assert next_step(signed_in=None) == SignIn()


def test_without_a_session_prompt_none_is_login_required() -> None:
    assert next_step(signed_in=None, prompt="none") == Refuse("login_required")


def test_a_session_issues_at_once_for_a_first_party_client() -> None:
    assert next_step() == Issue(offline_access=True)


@pytest.mark.parametrize(("prompt", "max_age"), [("login", None), ("", 0), ("", 599)])
def test_a_request_for_a_fresher_sign_in_signs_in_again(prompt: str, max_age: int | None) -> None:
    assert next_step(prompt=prompt, max_age=max_age) == SignIn()


def test_a_max_age_the_session_is_within_issues() -> None:
    assert next_step(max_age=600) == Issue(offline_access=True)


@pytest.mark.parametrize(("prompt", "max_age"), [("login", None), ("", 0), ("", 60)])
def test_a_sign_in_made_after_the_request_arrived_is_fresh_enough(prompt: str, max_age: int | None) -> None:
    just_now = SignedIn("dana", auth_time=NOW - timedelta(seconds=1))
    waiting_since = NOW - timedelta(seconds=30)
    assert next_step(
        prompt=prompt, max_age=max_age, signed_in=just_now, waiting_since=waiting_since
    ) == Issue(offline_access=True)


def test_a_sign_in_made_before_the_request_arrived_is_not() -> None:
    earlier = SignedIn("dana", auth_time=NOW - timedelta(minutes=5))
    assert next_step(max_age=0, signed_in=earlier, waiting_since=NOW - timedelta(minutes=1)) == SignIn()


def test_prompt_none_with_a_stale_session_is_login_required() -> None:
    assert next_step(prompt="none", max_age=60) == Refuse("login_required")


# --- id_token_hint ----------------------------------------------------------------------------
def test_a_hint_naming_the_signed_in_user_issues() -> None:
    assert next_step(hint_sub="dana") == Issue(offline_access=True)


def test_a_hint_naming_someone_else_asks_for_their_sign_in() -> None:
    assert next_step(hint_sub="sam") == SignIn()


def test_a_hint_naming_someone_else_with_prompt_none_is_login_required() -> None:
    assert next_step(hint_sub="sam", prompt="none") == Refuse("login_required")


def test_someone_else_signing_in_for_a_hinted_request_is_login_required() -> None:
    sam = SignedIn("sam", auth_time=NOW - timedelta(seconds=1))
    assert next_step(hint_sub="dana", signed_in=sam, waiting_since=NOW - timedelta(minutes=1)) == Refuse(
        "login_required"
    )


# --- consent ----------------------------------------------------------------------------------
def test_a_third_party_client_asks_the_first_time() -> None:
    assert next_step(first_party=False) == AskConsent()


def test_a_third_party_client_never_asked_with_prompt_none_is_consent_required() -> None:
    assert next_step(first_party=False, prompt="none") == Refuse("consent_required")


def test_remembered_consent_for_every_scope_issues_with_offline_access() -> None:
    assert next_step(first_party=False, scopes=OFFLINE, consented=OFFLINE) == Issue(offline_access=True)


def test_consent_for_fewer_scopes_asks_again() -> None:
    assert next_step(first_party=False, consented=frozenset({"openid"})) == AskConsent()


def test_prompt_consent_asks_even_when_remembered() -> None:
    assert next_step(first_party=False, prompt="consent", consented=SCOPES) == AskConsent()


def test_consent_just_given_issues() -> None:
    assert next_step(first_party=False, prompt="consent", consent_given=True) == Issue(offline_access=True)


def test_silently_only_offline_access_lacking_consent_is_dropped() -> None:
    assert next_step(first_party=False, prompt="none", scopes=OFFLINE, consented=SCOPES) == Issue(
        offline_access=False
    )


def test_offline_access_lacking_consent_with_a_page_to_show_asks() -> None:
    assert next_step(first_party=False, scopes=OFFLINE, consented=SCOPES) == AskConsent()


def test_an_empty_consent_record_is_not_never_asked() -> None:
    assert next_step(first_party=False, scopes=frozenset(), consented=frozenset()) == Issue(
        offline_access=True
    )
    assert next_step(first_party=False, scopes=frozenset(), consented=None) == AskConsent()


# --- parameters -------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "seconds"), [(None, None), ("", None), ("0", 0), ("3600", 3600)])
def test_max_age_reads_whole_seconds(raw: str | None, seconds: int | None) -> None:
    assert parse_max_age(raw) == seconds


@pytest.mark.parametrize("raw", ["-1", "1.5", "²", "ten", "1" * 11, " 5"])
def test_max_age_refuses_anything_else(raw: str) -> None:
    with pytest.raises(InvalidInteractionParameter):
        parse_max_age(raw)


def test_prompts_are_a_set_of_words() -> None:
    assert parse_prompts("login  consent") == {"login", "consent"}
    assert parse_prompts(None) == frozenset()
