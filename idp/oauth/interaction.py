"""What an authorization request needs next: a sign-in, the user's consent, or its code.

Pure: plain values in, a decision out, no HTTP and no database. Every prompt, max_age,
id_token_hint and consent rule is a line of ``decide`` (OIDC Core 3.1.2.1), in the manner of
node-oidc-provider's interaction policy; the authorization endpoint only acts on the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# OIDC Core 3.1.2.1: max_age is a number of seconds; more digits than this is not a real request.
MAX_AGE_DIGITS = 10


class InvalidInteractionParameter(ValueError):
    """A parameter of the request cannot be read; the message says which (for the client)."""


@dataclass(frozen=True)
class Asked:
    """What the request asks of the interaction."""

    prompts: frozenset[str] = frozenset()
    max_age: int | None = None
    # The subject of a valid id_token_hint: who the client expects to be signed in.
    hint_sub: str | None = None
    # The scopes the client may be granted, of those it asked for.
    scopes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SignedIn:
    """The browser's live session at the provider."""

    account_id: str
    auth_time: datetime


@dataclass(frozen=True)
class SignIn:
    """Send the user to the sign-in page; the request waits."""


@dataclass(frozen=True)
class AskConsent:
    """Show the consent page; the request waits."""


@dataclass(frozen=True)
class Issue:
    """Issue the code now; ``offline_access`` says whether a refresh token may come of it."""

    offline_access: bool


@dataclass(frozen=True)
class Refuse:
    """Answer the client with ``error`` (``login_required`` or ``consent_required``)."""

    error: str


Decision = SignIn | AskConsent | Issue | Refuse
LOGIN_REQUIRED = Refuse("login_required")
CONSENT_REQUIRED = Refuse("consent_required")


def decide(
    asked: Asked,
    *,
    signed_in: SignedIn | None,
    waiting_since: datetime | None,
    first_party: bool,
    consented: frozenset[str] | None,
    consent_given: bool,
    now: datetime,
) -> Decision:
    """Decide the next step of a request.

    ``waiting_since``: when the request was first received, if it waited for a sign-in or a
    consent; ``consented``: the scopes the user allowed this client before (None: never asked);
    ``consent_given``: the user has just allowed it on the consent page.
    """
    silent = "none" in asked.prompts
    # A sign-in made after this request arrived is as fresh as it can ask for: without this,
    # max_age=0 (or a max_age shorter than the redirect back) would send the user to sign in forever.
    fresh = signed_in is not None and waiting_since is not None and signed_in.auth_time >= waiting_since
    if signed_in is None or (
        not fresh and (_wants_new_login(asked, signed_in, now) or _names_another(asked, signed_in))
    ):
        return LOGIN_REQUIRED if silent else SignIn()
    if _names_another(asked, signed_in):
        # The hint names who must be signed in; someone else just did.
        return LOGIN_REQUIRED
    # First-party clients never ask: signing in grants offline access to those registered for it.
    if first_party or consent_given:
        return Issue(offline_access=True)
    if "consent" in asked.prompts:
        return AskConsent()
    if consented is not None and asked.scopes <= consented:
        return Issue(offline_access=True)
    # A third-party client needs consent for every scope, offline_access included; when only that
    # lacks it and no page may be shown, it is dropped silently and the rest granted (DESIGN "Claims").
    if silent and consented is not None and asked.scopes - {"offline_access"} <= consented:
        return Issue(offline_access=False)
    return CONSENT_REQUIRED if silent else AskConsent()


def _wants_new_login(asked: Asked, signed_in: SignedIn, now: datetime) -> bool:
    """Whether the request asks for a fresher sign-in than the session has."""
    if "login" in asked.prompts:
        return True
    if asked.max_age is None:
        return False
    # max_age=0 is "sign in again now", like prompt=login.
    return asked.max_age == 0 or (now - signed_in.auth_time).total_seconds() > asked.max_age


def _names_another(asked: Asked, signed_in: SignedIn) -> bool:
    return asked.hint_sub is not None and asked.hint_sub != signed_in.account_id


def parse_max_age(raw: str | None) -> int | None:
    """Return ``max_age`` in seconds, None when absent; raise for anything but digits."""
    if raw is None or raw == "":
        return None
    # isascii: str.isdigit() is also true of "²", which int() refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > MAX_AGE_DIGITS:
        raise InvalidInteractionParameter("max_age must be a non-negative number of seconds.")
    return int(raw)


def parse_prompts(raw: str | None) -> frozenset[str]:
    return frozenset((raw or "").split())
