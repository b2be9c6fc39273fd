"""OIDC endpoints: authorize, token, revoke, introspect, userinfo, logout, JWKS, discovery.

Thin: parse, delegate, render."""

from __future__ import annotations

import re
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from flask import (
    Blueprint,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from idp.extensions import csrf, db
from idp.limits import limit_token
from idp.oauth.access import AccessTokenRejected, verify_access_token
from idp.oauth.consent import ConsentForm, has_consent, record_consent
from idp.oauth.id_tokens import IdTokenHint, InvalidIdTokenHint, read_id_token_hint
from idp.oauth.models import Client
from idp.oauth.pending import (
    PendingRequest,
    find_pending_request,
    finish_pending_request,
    save_pending_request,
)
from idp.oauth.scopes import scope_list
from idp.oauth.server import DISCOVERY_KEY, SignedInUser, oauth_server, query_client
from idp.runtime import runtime
from idp.web import current_op_session, prefer_locales

bp = Blueprint("oauth", __name__)

# RFC 6749 3.1: request parameters MUST NOT be included more than once.
SINGLE_VALUED = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "prompt",
    "max_age",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "login_hint",
    "id_token_hint",
    "ui_locales",
)
MAX_PARAM_LENGTH = 2000
# Parameters stored in a column narrower than MAX_PARAM_LENGTH (authorization_code.nonce), or wider.
MAX_PARAM_LENGTHS = {"nonce": 500, "id_token_hint": 16_384}
# OIDC Core 3.1.2.1: max_age is a number of seconds; more digits than this is not a real request.
MAX_AGE_DIGITS = 10
# C0 controls and DEL: never in a genuine request; NUL cannot even be stored in PostgreSQL text.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# Authlib copies these into error descriptions, which RFC 6749 limits to %x20-21 / %x23-5B / %x5D-7E;
# anything else there makes it raise ValueError (a 500) instead of answering the error.
ECHOED_IN_ERRORS = ("redirect_uri", "response_type")
_ERROR_TEXT = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


@bp.route("/authorize", methods=["GET", "POST"])
@csrf.exempt  # a client-initiated request, protected by state and PKCE, not a form of ours
def authorize() -> Response:
    values = request.args if request.method == "GET" else request.form
    problem = _check_parameters(values)
    if problem:
        return error_page(problem)
    params = {key: values[key] for key in values}
    return _authorize(params, pending=None)


@bp.get("/authorize/continue/<request_id>")
def continue_authorization(request_id: str) -> Response:
    pending = find_pending_request(request_id)
    if pending is None:
        return error_page(_("This sign-in request has expired. Go back to the portal and start again."))
    return _authorize(pending.params, pending=pending)


@bp.post("/authorize/consent")
def consent() -> Response:
    form = ConsentForm()
    pending = find_pending_request(form.request_id.data)
    if not form.validate_on_submit() or pending is None:
        return error_page(_("This sign-in request has expired. Go back to the portal and start again."))
    op_session = current_op_session()
    if op_session is None:
        return redirect(url_for("accounts.signin", request=pending.id), code=303)
    if form.allow.data:
        # Consent covers what the page listed: the requested scopes this client may have, not the raw ask.
        client = query_client(pending.params["client_id"])
        scope = client.get_allowed_scope(pending.params.get("scope")) if client else ""
        record_consent(op_session.account, pending.params["client_id"], scope)
        return _authorize(pending.params, pending=pending, consent_given=True)
    server = oauth_server()
    oauth_request = _oauth_request(pending.params)
    try:
        # Validated again: the client or its redirect URIs may have changed while the page was open.
        grant = server.get_consent_grant(request=oauth_request, end_user=op_session.account)
    except OAuth2Error as error:
        db.session.rollback()
        return _authorization_error(error)
    response: Response = server.create_authorization_response(
        request=oauth_request, grant_user=None, grant=grant
    )
    finish_pending_request(pending.id)
    db.session.commit()
    return response


def _authorize(
    params: dict[str, Any], *, pending: PendingRequest | None, consent_given: bool = False
) -> Response:
    server = oauth_server()
    op_session = current_op_session()
    account = op_session.account if op_session else None
    oauth_request = _oauth_request(params)
    try:
        grant = server.get_consent_grant(request=oauth_request, end_user=account)
    except OAuth2Error as error:
        db.session.rollback()
        return _authorization_error(error)
    client: Client = grant.client
    prefer_locales(params.get("ui_locales"))
    prompts = set(params.get("prompt", "").split())
    try:
        max_age = _max_age(params)
        hint = _id_token_hint(params)
    except InvalidRequestError as error:
        return _redirect_error(error, grant, params)
    # A sign-in made after this request arrived is as fresh as it can ask for: without this,
    # max_age=0 (or a max_age shorter than the redirect back) sends the user to /signin forever.
    fresh = op_session is not None and pending is not None and op_session.auth_time >= pending.created_at
    if op_session is None or (
        not fresh
        and (
            _needs_login(op_session.auth_time, max_age, prompts)
            or _names_another(hint, op_session.account_id)
        )
    ):
        if "none" in prompts:
            return _redirect_error(LoginRequiredError(), grant, params)
        request_id = pending.id if pending else save_pending_request(params, client)
        db.session.commit()
        return redirect(url_for("accounts.signin", request=request_id), code=303)
    assert account is not None
    # OIDC Core 3.1.2.1: the hint names who must be signed in; someone else just did.
    if _names_another(hint, account.id):
        return _redirect_error(LoginRequiredError(), grant, params)
    needs_consent, offline_access = _consent_needed(
        client, account, grant.request.scope, prompts, consent_given
    )
    if needs_consent:
        if "none" in prompts:
            return _redirect_error(ConsentRequiredError(), grant, params)
        request_id = pending.id if pending else save_pending_request(params, client)
        db.session.commit()
        form = ConsentForm(request_id=request_id)
        scopes = scope_list(grant.request.scope)
        return make_response(render_template("consent.html", form=form, client=client, scopes=scopes))
    user = SignedInUser(
        account,
        op_session.auth_time,
        session_id=op_session.id,
        sid=op_session.sid,
        offline_access=offline_access,
    )
    response: Response = server.create_authorization_response(
        request=oauth_request, grant_user=user, grant=grant
    )
    if pending is not None:
        finish_pending_request(pending.id)
    db.session.commit()
    return response


def _consent_needed(
    client: Client, account: Any, scope: str | None, prompts: set[str], consent_given: bool
) -> tuple[bool, bool]:
    """Whether to show the consent page, and whether offline access may be granted without it.

    First-party clients never ask: signing in grants offline access to those registered for it.
    A third-party client needs the user's consent for every scope, offline_access included; when
    only offline access lacks it and the page cannot be shown (prompt=none), offline access is
    dropped silently and the rest is granted (DESIGN "Claims").
    """
    if client.is_first_party or consent_given:
        return False, True
    if "consent" in prompts:
        return True, False
    if has_consent(account, client.client_id, scope):
        return False, True
    without_offline = " ".join(s for s in scope_list(scope) if s != "offline_access")
    if "none" in prompts and has_consent(account, client.client_id, without_offline):
        return False, False
    return True, False


def _needs_login(auth_time: Any, max_age: int | None, prompts: set[str]) -> bool:
    """Whether this request asks for a fresher sign-in than the session has (OIDC Core 3.1.2.1)."""
    if "login" in prompts:
        return True
    if max_age is None:
        return False
    # max_age=0 is "sign in again now", like prompt=login (OIDC Core 3.1.2.1).
    age = (runtime().clock.now() - auth_time).total_seconds()
    return max_age == 0 or age > max_age


def _max_age(params: dict[str, Any]) -> int | None:
    raw = params.get("max_age")
    if raw is None or raw == "":
        return None
    # isascii: str.isdigit() is also true of "²", which int() refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > MAX_AGE_DIGITS:
        raise InvalidRequestError("max_age must be a non-negative number of seconds.")
    return int(raw)


def _id_token_hint(params: dict[str, Any]) -> IdTokenHint | None:
    raw = params.get("id_token_hint")
    if not raw:
        return None
    rt = runtime()
    try:
        return read_id_token_hint(raw, keys=rt.keys(), issuer=rt.settings.issuer)
    except InvalidIdTokenHint as error:
        raise InvalidRequestError(str(error)) from None


def _names_another(hint: IdTokenHint | None, account_id: str) -> bool:
    return hint is not None and hint.sub != account_id


def _oauth_request(params: dict[str, Any]) -> OAuth2Request:
    oauth_request = OAuth2Request("GET", runtime().settings.issuer + "/authorize", headers=request.headers)
    oauth_request.payload = BasicOAuth2Payload(params)
    return oauth_request


def _check_parameters(values: MultiDict[str, str]) -> str | None:
    for key in SINGLE_VALUED:
        if len(values.getlist(key)) > 1:
            return str(_("The parameter %(name)s was sent more than once.", name=key))
    for key in values:
        limit = MAX_PARAM_LENGTHS.get(key, MAX_PARAM_LENGTH)
        if len(key) > 100 or any(len(v) > limit for v in values.getlist(key)):
            return str(_("The authorization request is too large."))
    for key in values:
        if _CONTROL_CHARACTERS.search(key) or any(_CONTROL_CHARACTERS.search(v) for v in values.getlist(key)):
            return str(_("The authorization request contains characters that are not allowed."))
    for key in ECHOED_IN_ERRORS:
        if not _ERROR_TEXT.fullmatch(values.get(key, "")):
            return str(_("The parameter %(name)s contains characters that are not allowed.", name=key))
    return None


def _authorization_error(error: OAuth2Error) -> Response:
    # RFC 6749 4.1.2.1: never redirect to an unverified redirect URI or for an unknown client.
    if error.redirect_uri:
        server = oauth_server()
        response: Response = server.handle_error_response(None, error)
        return response
    return error_page(error.get_error_description() or error.error, error=error.error)


def _redirect_error(error: OAuth2Error, grant: Any, params: dict[str, Any]) -> Response:
    error.redirect_uri = grant.redirect_uri
    error.state = params.get("state")
    db.session.commit()
    return _authorization_error(error)


def error_page(message: str, *, error: str = "invalid_request", status: int = 400) -> Response:
    return make_response(render_template("error.html", message=message, error=error), status)


@bp.post("/token")
@csrf.exempt
@limit_token
def token() -> Response:
    response: Response = oauth_server().create_token_response()
    if response.status_code == 200:
        db.session.commit()
    else:
        db.session.rollback()
    return response


@bp.post("/revoke")
@csrf.exempt
def revoke() -> Response:
    """RFC 7009: 200 whether or not the token was known; revoking a token ends its family."""
    return _token_endpoint("revocation")


@bp.post("/introspect")
@csrf.exempt
def introspect() -> Response:
    """RFC 7662 for confidential clients, each about its own tokens."""
    return _token_endpoint("introspection")


def _token_endpoint(name: str) -> Response:
    response: Response = oauth_server().create_endpoint_response(name)
    if response.status_code == 200:
        db.session.commit()
    else:
        db.session.rollback()
    return response


@bp.route("/userinfo", methods=["GET", "POST"])
@csrf.exempt
def userinfo() -> Response:
    try:
        access = verify_access_token(request.headers.get("Authorization", ""))
    except AccessTokenRejected as rejected:
        response = jsonify(error=rejected.error, error_description=rejected.description)
        response.status_code = rejected.status
        # RFC 6750 3.1: a request without credentials gets a bare challenge, no error code.
        response.headers["WWW-Authenticate"] = (
            f'Bearer error="{rejected.error}", error_description="{rejected.description}"'
            if rejected.error != "invalid_request"
            else "Bearer"
        )
        return response
    claims = runtime().claims().for_scope(access.account, access.scope)
    db.session.commit()
    response = jsonify(claims)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/jwks.json")
def jwks() -> Response:
    # Bytes built once per key set change; max-age stays below the next-key lead time.
    body, etag = runtime().keys().public_jwks_json()
    response = Response(body, mimetype="application/json")
    response.headers["Cache-Control"] = f"public, max-age={runtime().settings.jwks_max_age}"
    response.set_etag(etag)
    return response.make_conditional(request)


@bp.get("/.well-known/openid-configuration")
def openid_configuration() -> Response:
    # The same bytes for the app's whole life (idp.oauth.discovery).
    body: bytes = current_app.extensions[DISCOVERY_KEY]
    response = Response(body, mimetype="application/json")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
