"""The portal's pages: sign-in, the callback, the start page with one tab per student, sign-out,
and the back-channel logout receiver. Views parse the request, call one thing, render the outcome.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import requests
from authlib.integrations.base_client import MismatchingStateError, OAuthError
from flask import Blueprint, Response, abort, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response as BaseResponse

from relying_party_demo.app import portal
from relying_party_demo.export import export_filename, student_xml
from relying_party_demo.freshness import ClaimsRefused, HeldTokens, merged_claims, refresh_needed
from relying_party_demo.language import current_language
from relying_party_demo.last_page import COOKIE_NAME as LAST_PAGE_COOKIE
from relying_party_demo.last_page import MAX_AGE as LAST_PAGE_MAX_AGE
from relying_party_demo.models import StoredSession
from relying_party_demo.previous_sign_in import previous_sign_in
from relying_party_demo.provider import ProviderUnavailable, district
from relying_party_demo.sessions import Identity, SessionBusy, SessionStore
from relying_party_demo.students import (
    LinkedStudent,
    StudentRecord,
    demo_record,
    find_student,
    first_student,
    linked_students,
)
from relying_party_demo.tokens import IdTokenRefused, LogoutTokenRefused
from relying_party_demo.web_session import current_session

log = logging.getLogger(__name__)
bp = Blueprint("views", __name__)
RELOAD_OFFER = "reload_offer"
# A cookie set when this browser's portal session timed out: the next sign-in asks for the
# password (prompt=login) until one completes. A cookie, not a session row: nothing is kept.
SIGN_IN_AGAIN_COOKIE = "rp_sign_in_again"
# Set on the way to Account Preferences: the next page refreshes the claims at once.
REFRESH_CLAIMS = "refresh_claims"
# Pages that never read the claims, so they never wait for the provider.
NOT_REFRESHED = {"views.logout", "views.account_preferences"}
# Pages that answer whatever became of the session: the provider's calls, probes, the callback.
NOT_AFTER_TIMEOUT = {"views.backchannel_logout", "views.healthz", "views.callback", "static"}

NOT_AVAILABLE = _l("Student information is not available at this time.")
PROVIDER_DOWN_AFTER_SIGN_OUT = _l(
    "You are signed out of the portal, but the district sign-in service could not be reached "
    "to sign you out there too. Close your browser to finish signing out."
)

View = TypeVar("View", bound=Callable[..., Any])


@bp.before_app_request
def _signed_out_after_idle() -> BaseResponse | None:
    """After RP_IDLE_SECONDS without a request, the next page says so (the row is already gone)."""
    if current_session().timed_out and request.endpoint not in NOT_AFTER_TIMEOUT:
        response = make_response(render_template("timed_out.html"))
        response.set_cookie(
            SIGN_IN_AGAIN_COOKIE,
            "1",
            path="/",
            httponly=True,
            secure=portal().settings.uses_https,
            samesite="Lax",
        )
        return response
    return None


@bp.before_app_request
def _fresh_claims() -> BaseResponse | None:
    """Read the claims again when older than a minute, or at once back from Account Preferences."""
    session = current_session()
    if (
        session.identity is None
        or session.row is None
        or request.endpoint in NOT_AFTER_TIMEOUT | NOT_REFRESHED
    ):
        return None
    store = portal().store()
    seen = store.tokens(session.row)
    asked = bool(session.pop(REFRESH_CLAIMS, False))
    now = portal().clock.now()
    if seen is None or not (asked or seen.stale(now)):
        return None
    try:
        fresh = _claims_in_turn(store, session.row, seen, asked=asked, now=now)
    except ClaimsRefused as refusal:
        # The provider ended what this session stood on (signed out, account removed): so do we.
        log.info("claims refresh refused: %s", refusal)
        session.end()
        return redirect(url_for("views.home"))
    except (OAuthError, ProviderUnavailable, SessionBusy, requests.RequestException, ValueError) as error:
        # The provider (or the session's turn) is not to be had now: keep the claims we have.
        log.warning("claims not refreshed: %s", error)
        return None
    if fresh is None:  # the session ended meanwhile (a back-channel logout)
        session.end()
        return redirect(url_for("views.home"))
    session.refresh_identity(fresh)
    return None


def _claims_in_turn(
    store: SessionStore, row: StoredSession, seen: HeldTokens, *, asked: bool, now: datetime
) -> Identity | None:
    """Under the session's lock, fresh claims: read by a request before us, else by this one.

    Two requests of one session (two tabs, a page and its printer view) may find the claims stale
    together; only the first to take the lock refreshes, and the next one uses what it stored.
    A refresh token the provider rotated is kept even when userinfo then fails: the spent one
    would never be taken again.
    """
    failure: Exception | None = None
    with store.locked(row) as locked:
        identity = locked.identity if locked is not None else None
        if locked is None or identity is None:
            return None
        held = locked.tokens
        if held is None or not refresh_needed(held, seen, asked=asked, now=now):
            return identity
        if not held.usable(now):
            held = _refreshed(held, now)
            store.keep(locked, held)
        try:
            claims = _userinfo_claims(identity, held)
        except (OAuthError, ProviderUnavailable, requests.RequestException, ValueError) as error:
            failure = error
        else:
            store.keep(locked, replace(held, claims_at=now.timestamp()), claims)
    if failure is not None:
        raise failure
    return Identity(identity.sub, identity.sid, identity.id_token, claims)


def _refreshed(held: HeldTokens, now: datetime) -> HeldTokens:
    """New tokens from the refresh token; the claims are as old as they were."""
    if held.refresh_token is None:
        raise OAuthError(description="the access token expired and there is no refresh token")
    try:
        token = district().fetch_access_token(grant_type="refresh_token", refresh_token=held.refresh_token)
    except OAuthError as error:
        if error.error == "invalid_grant":
            raise ClaimsRefused(f"refresh token refused: {error.description}") from None
        raise
    return replace(HeldTokens.from_response(dict(token), now, previous=held), claims_at=held.claims_at)


def _userinfo_claims(identity: Identity, held: HeldTokens) -> dict[str, Any]:
    """The session's claims with userinfo's, read with the access token ``held``."""
    client = district()
    response = client.get(
        client.load_server_metadata()["userinfo_endpoint"],
        token={"access_token": held.access_token, "token_type": "Bearer"},
    )
    if response.status_code == 401:
        raise ClaimsRefused("the access token was refused")
    response.raise_for_status()
    return merged_claims(identity.claims, response.json(), identity.sub)


def signed_in(view: View) -> View:
    """Pages for a signed-in user; anyone else goes to the sign-in page."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_session().identity is None:
            return redirect(url_for("views.home"))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# --- signing in ---------------------------------------------------------------------------
@bp.get("/")
def home() -> str | BaseResponse:
    """The start page when signed in, the sign-in page otherwise."""
    identity = current_session().identity
    if identity is None:
        return render_template("signin.html", signed_out=_returned_from_logout())
    students = linked_students(identity.claims)
    selected = first_student(students, identity.claims.get("primary_student_id"))
    offer = current_session().pop(RELOAD_OFFER, None)
    return render_template("student.html", **_page(identity, students, selected), reload_offer=offer)


@bp.get("/login")
def login() -> BaseResponse:
    """Start the authorization code flow: state, nonce and PKCE kept in the server-side session."""
    session = current_session()
    if session.identity is not None:
        return redirect(url_for("views.home"))
    settings = portal().settings
    # No silent re-entry on a shared computer: the provider's session (IDP_SESSION_IDLE_SECONDS)
    # outlives ours, so a sign-in older than our idle time, or any after a timeout, asks for the
    # password again (OIDC Core 3.1.2.1 max_age and prompt=login; the provider honours both).
    extra = {"prompt": "login"} if request.cookies.get(SIGN_IN_AGAIN_COOKIE) else {}
    # The provider's pages in the portal's language (OIDC Core 3.1.2.1 ui_locales).
    response: BaseResponse = district().authorize_redirect(
        settings.redirect_uri, max_age=settings.idle_seconds, ui_locales=current_language(), **extra
    )
    return response


@bp.get("/callback")
def callback() -> BaseResponse | tuple[str, int]:
    """Finish the flow: redeem the code, verify the ID token, bind the session to the user."""
    settings = portal().settings
    # RFC 9207: an answer naming another issuer is a mix-up attack; Authlib does not check it.
    if request.args.get("iss", settings.issuer) != settings.issuer:
        return refused(_("The answer came from a sign-in service this portal does not use."))
    try:
        token = district().authorize_access_token()
    except MismatchingStateError:
        return refused(_("This sign-in was not started in this browser, or it took too long."))
    except OAuthError as error:
        log.info("sign-in ended by the provider: %s %s", error.error, error.description)
        if error.error in ("access_denied", "login_required", "consent_required"):
            return refused(_("The sign-in was cancelled."))
        return refused(_("The district sign-in service could not complete the sign-in."))
    except IdTokenRefused as refusal:
        log.warning("ID token refused (%s): %s", refusal.reason, refusal)
        return refused(_("The portal could not verify the sign-in: %(reason)s", reason=refusal))
    claims = token.get("userinfo")
    if not claims or "id_token" not in token:
        return refused(_("The district sign-in service answered without an ID token."))
    sid = claims.get("sid")
    identity = Identity(
        sub=claims["sub"],
        sid=sid if isinstance(sid, str) else None,
        id_token=token["id_token"],
        claims=dict(claims),
    )
    session = current_session()
    last_pages = portal().last_pages
    offer = last_pages.load(request.cookies.get(LAST_PAGE_COOKIE), identity.sub)
    session.clear()  # whatever the browser held before signing in is not carried over
    session.sign_in(identity, HeldTokens.from_response(token, portal().clock.now()))
    if offer:
        session[RELOAD_OFFER] = offer
    response = redirect(url_for("views.home"))
    response.delete_cookie(SIGN_IN_AGAIN_COOKIE, path="/", secure=settings.uses_https, samesite="Lax")
    return response


def _returned_from_logout() -> bool:
    """Whether this visit is the provider sending the browser back after our sign-out request."""
    if "state" not in request.args:
        return False
    try:
        district().validate_logout_response()
    except OAuthError:
        return False
    return True


def refused(message: str) -> tuple[str, int]:
    return render_template("refused.html", message=message), 400


# --- pages --------------------------------------------------------------------------------
@bp.get("/students/<student_id>")
@signed_in
def student(student_id: str) -> BaseResponse:
    identity = _identity()
    students = linked_students(identity.claims)
    selected = _own_student(students, student_id)
    response = make_response(render_template("student.html", **_page(identity, students, selected)))
    _remember_page(response, identity)
    return response


@bp.get("/students/<student_id>/print")
@signed_in
def student_print(student_id: str) -> str:
    identity = _identity()
    selected = _own_student(linked_students(identity.claims), student_id)
    return render_template(
        "print.html",
        student=selected,
        record=demo_record(selected),
        district_name=portal().settings.district_name,
    )


@bp.get("/students/<student_id>/export.xml")
@signed_in
def student_export(student_id: str) -> Response | tuple[str, int]:
    identity = _identity()
    selected = _own_student(linked_students(identity.claims), student_id)
    record = demo_record(selected)
    if record is None:
        return render_template("not_found.html", message=NOT_AVAILABLE, **frame_of(identity)), 404
    response = Response(student_xml(record), mimetype="application/xml")
    response.headers["Content-Disposition"] = f'attachment; filename="{export_filename(record)}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/help")
def help_page() -> BaseResponse:
    identity = current_session().identity
    response = make_response(
        render_template(
            "help.html",
            account=_account(identity) if identity else None,
            idle_minutes=max(1, portal().settings.idle_seconds // 60),
            provider_trouble_url=f"{portal().settings.issuer}/signin/trouble",
        )
    )
    if identity is not None:
        _remember_page(response, identity)
    return response


@bp.get("/account-preferences")
@signed_in
def account_preferences() -> BaseResponse:
    """Go to the provider's Account Preferences, which links back here; on return, fresh claims."""
    current_session()[REFRESH_CLAIMS] = True
    settings = portal().settings
    return redirect(f"{settings.issuer}/account?{urlencode({'client_id': settings.client_id})}")


@bp.get("/healthz")
def healthz() -> tuple[str, int, dict[str, str]]:
    return "ok\n", 200, {"Content-Type": "text/plain", "Cache-Control": "no-store"}


# --- signing out --------------------------------------------------------------------------
@bp.post("/logout")
def logout() -> BaseResponse | tuple[str, int]:
    """End the portal session, then RP-initiated logout at the provider (OIDC RP-Initiated Logout 1.0)."""
    session = current_session()
    identity = session.identity
    session.end()
    if identity is None:
        return redirect(url_for("views.home"))
    try:
        response: BaseResponse = district().logout_redirect(
            post_logout_redirect_uri=portal().settings.post_logout_redirect_uri,
            id_token_hint=identity.id_token,
        )
    except ProviderUnavailable as error:
        log.warning("sign-out at the provider skipped: %s", error)
        return render_template("refused.html", message=PROVIDER_DOWN_AFTER_SIGN_OUT), 502
    # A deliberate sign-out: nothing to offer the next person who signs in here.
    response.delete_cookie(LAST_PAGE_COOKIE, path="/")
    return response


@bp.post("/backchannel-logout")
def backchannel_logout() -> tuple[Response, int]:
    """OIDC Back-Channel Logout 1.0 2.5: verify the logout token, end the sessions it names."""
    value = request.form.get("logout_token", "")
    try:
        ended = portal().store().end_for_logout(district().verify_logout_token(value))
    except LogoutTokenRefused as refusal:
        log.warning("logout token refused (%s): %s", refusal.reason, refusal)
        return _backchannel_answer({"error": "invalid_request", "error_description": str(refusal)}, 400)
    except (ProviderUnavailable, requests.RequestException) as error:
        log.warning("logout token not checked: %s", error)
        return _backchannel_answer({"error": "temporarily_unavailable"}, 503)
    log.info("back-channel logout ended %d session(s)", ended)
    return _backchannel_answer(None, 200)


def _backchannel_answer(body: dict[str, str] | None, status: int) -> tuple[Response, int]:
    response = Response("" if body is None else json.dumps(body), mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response, status


# --- helpers ------------------------------------------------------------------------------
def _identity() -> Identity:
    identity = current_session().identity
    assert identity is not None  # @signed_in
    return identity


def _own_student(students: list[LinkedStudent], student_id: str) -> LinkedStudent:
    """One of this session's students; any other id is not found (no hint that it exists)."""
    found = find_student(students, student_id)
    if found is None:
        abort(404)
    return found


def frame_of(identity: Identity | None) -> dict[str, Any]:
    """What base.html's header needs: the account when someone is signed in."""
    return {"account": _account(identity) if identity is not None else None}


def _account(identity: Identity) -> dict[str, str]:
    claims = identity.claims
    name = " ".join(
        str(claims[part]) for part in ("given_name", "family_name") if isinstance(claims.get(part), str)
    ).strip()
    return {
        "name": name or str(claims.get("name") or claims.get("preferred_username") or ""),
        "previous_sign_in": previous_sign_in(claims, ZoneInfo(portal().settings.timezone)),
    }


def _page(
    identity: Identity, students: list[LinkedStudent], selected: LinkedStudent | None
) -> dict[str, Any]:
    record: StudentRecord | None = demo_record(selected) if selected else None
    return {
        "account": _account(identity),
        "students": students,
        "selected": selected,
        "record": record,
        "not_available": NOT_AVAILABLE,
    }


def _remember_page(response: BaseResponse, identity: Identity) -> None:
    value = portal().last_pages.dump(identity.sub, request.path)
    if value is not None:
        response.set_cookie(
            LAST_PAGE_COOKIE,
            value,
            max_age=int(LAST_PAGE_MAX_AGE.total_seconds()),
            path="/",
            httponly=True,
            secure=portal().settings.uses_https,
            samesite="Lax",
        )
