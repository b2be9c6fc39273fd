"""OIDC endpoints: authorize, token, revoke, introspect, userinfo, JWKS, discovery.

Views parse the request, let Authlib validate it, ask the interaction policy what comes next
(``idp.oauth.interaction``), and act on the answer.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from flask import Blueprint, jsonify, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from idp.extensions import csrf
from idp.oauth.access import AccessTokenRejected
from idp.oauth.codes import SignedInUser
from idp.oauth.discovery import discovery_document
from idp.oauth.forms import ConsentForm
from idp.oauth.id_tokens import InvalidIdTokenHint
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
from idp.oauth.pending import PendingRequest
from idp.oauth.scopes import scope_list
from idp.web import prefer_locales
from idp.web.access_log import note_request
from idp.web.context import current_op_session, oauth_server, services
from idp.web.errors import authorization_error_message

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
# C0 controls and DEL: never in a genuine request. A NUL arrives as U+FFFD (idp.web.parameters),
# which no genuine request holds either.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f\ufffd]")
# Authlib copies these into error descriptions, which RFC 6749 limits to %x20-21 / %x23-5B / %x5D-7E;
# anything else there makes it raise ValueError (a 500) instead of answering the error.
ECHOED_IN_ERRORS = ("redirect_uri", "response_type")
_ERROR_TEXT = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
REFUSALS = {"login_required": LoginRequiredError, "consent_required": ConsentRequiredError}


@bp.route("/authorize", methods=["GET", "POST"])
@csrf.exempt  # a client-initiated request, protected by state and PKCE, not a form of ours
def authorize() -> Response:
    values = request.args if request.method == "GET" else request.form
    problem = _check_parameters(values)
    if problem:
        return error_page(problem)
    return _authorize({key: values[key] for key in values}, pending=None)


@bp.get("/authorize/continue/<request_id>")
def continue_authorization(request_id: str) -> Response:
    pending = services().pending_requests().find(request_id)
    if pending is None:
        return error_page(_("This sign-in request has expired. Go back to the portal and start again."))
    return _authorize(pending.params, pending=pending)


@bp.post("/authorize/consent")
def consent() -> Response:
    form = ConsentForm()
    pending = services().pending_requests().find(form.request_id.data)
    if not form.validate_on_submit() or pending is None:
        return error_page(_("This sign-in request has expired. Go back to the portal and start again."))
    op_session = current_op_session()
    if op_session is None:
        return redirect(url_for("accounts.signin", request=pending.id), code=303)
    if form.allow.data:
        return _authorize(pending.params, pending=pending, consent_given=True)
    server = oauth_server()
    oauth_request = _oauth_request(pending.params)
    try:
        # Validated again: the client or its redirect URIs may have changed while the page was open.
        grant = server.get_consent_grant(request=oauth_request, end_user=op_session.account)
    except OAuth2Error as error:
        return _authorization_error(error)
    response: Response = server.create_authorization_response(
        request=oauth_request, grant_user=None, grant=grant
    )
    services().pending_requests().finish(pending.id)
    services().session.commit()
    return response


def _authorize(
    params: dict[str, Any], *, pending: PendingRequest | None, consent_given: bool = False
) -> Response:
    server = oauth_server()
    built = services()
    op_session = current_op_session()
    oauth_request = _oauth_request(params)
    try:
        grant = server.get_consent_grant(
            request=oauth_request, end_user=op_session.account if op_session else None
        )
    except OAuth2Error as error:
        return _authorization_error(error)
    prefer_locales(params.get("ui_locales"))
    try:
        asked = Asked(
            prompts=parse_prompts(params.get("prompt")),
            max_age=parse_max_age(params.get("max_age")),
            hint_sub=built.id_tokens().read_hint(params["id_token_hint"]).sub
            if params.get("id_token_hint")
            else None,
            scopes=frozenset(scope_list(grant.request.scope)),
        )
    except (InvalidInteractionParameter, InvalidIdTokenHint) as invalid:
        return _redirect_error(InvalidRequestError(str(invalid)), grant, params)
    client = grant.client
    if consent_given and op_session is not None:
        # Consent covers what the page listed: the requested scopes this client may have, not the raw ask.
        built.consents().record(op_session.account_id, client.client_id, grant.request.scope)
    decision = decide(
        asked,
        signed_in=SignedIn(op_session.account_id, op_session.auth_time) if op_session else None,
        waiting_since=pending.created_at if pending else None,
        first_party=client.is_first_party,
        # decide issues a first-party client's code before it looks at consent: no need to read it.
        consented=(
            built.consents().granted(op_session.account_id, client.client_id)
            if op_session and not client.is_first_party
            else None
        ),
        consent_given=consent_given,
        now=built.clock.now(),
    )
    match decision:
        case Refuse(error=refusal):
            return _redirect_error(REFUSALS[refusal](), grant, params)
        case SignIn():
            request_id = pending.id if pending else built.pending_requests().save(params, client.client_id)
            built.session.commit()
            return redirect(url_for("accounts.signin", request=request_id), code=303)
        case AskConsent():
            request_id = pending.id if pending else built.pending_requests().save(params, client.client_id)
            built.session.commit()
            form = ConsentForm(request_id=request_id)
            scopes = scope_list(grant.request.scope)
            return make_response(render_template("consent.html", form=form, client=client, scopes=scopes))
        case Issue(offline_access):
            assert op_session is not None
            user = SignedInUser(
                op_session.account_id,
                op_session.auth_time,
                session_id=op_session.id,
                sid=op_session.sid,
                offline_access=offline_access,
                acting_staff_id=op_session.emulated_by,
            )
            response: Response = server.create_authorization_response(
                request=oauth_request, grant_user=user, grant=grant
            )
            if pending is not None:
                built.pending_requests().finish(pending.id)
            built.session.commit()
            return response
    raise AssertionError(decision)


def _oauth_request(params: dict[str, Any]) -> OAuth2Request:
    oauth_request = OAuth2Request("GET", services().issuer + "/authorize", headers=request.headers)
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
    services().session.rollback()
    # RFC 6749 4.1.2.1: never redirect to an unverified redirect URI or for an unknown client.
    if not error.redirect_uri:
        # A person reads this page: a sentence in their language, not Authlib's English description.
        return error_page(authorization_error_message(error.error), error=error.error)
    server = oauth_server()
    response: Response = server.handle_error_response(None, error)
    # RFC 9207: an error sent back to the client names the issuer too (Authlib's extension adds it
    # to what create_authorization_response answers; this error came before it).
    server.issuer_parameter.add_issuer_parameter(server, response)
    return response


def _redirect_error(error: OAuth2Error, grant: Any, params: dict[str, Any]) -> Response:
    error.redirect_uri = grant.redirect_uri
    error.state = params.get("state")
    return _authorization_error(error)


def error_page(message: str, *, error: str = "invalid_request", status: int = 400) -> Response:
    return make_response(render_template("error.html", message=message, error=error), status)


def _unreadable_credentials() -> Response | None:
    """A Basic header Authlib would fail on (non-ASCII, or not UTF-8 once decoded) instead of refusing."""
    parts = (request.headers.get("Authorization") or "").split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "basic":
        return None
    try:
        base64.b64decode(parts[1]).decode("utf-8")
    except binascii.Error:
        return None  # bad base64: Authlib answers invalid_client itself
    except ValueError:
        error = InvalidClientError(status_code=401, description="The client credentials are unreadable.")
        response: Response = oauth_server().handle_error_response(None, error)
        return response
    return None


def _token_endpoint_response(create: Any) -> Response:
    response: Response = _unreadable_credentials() or create()
    if response.status_code == 200:
        services().session.commit()
    else:
        services().session.rollback()
    return response


@bp.post("/token")
@csrf.exempt
def token() -> Response:
    return _token_endpoint_response(oauth_server().create_token_response)


@bp.post("/revoke")
@csrf.exempt
def revoke() -> Response:
    """RFC 7009: 200 whether or not the token was known; revoking a token ends its family."""
    return _token_endpoint_response(lambda: oauth_server().create_endpoint_response("revocation"))


@bp.post("/introspect")
@csrf.exempt
def introspect() -> Response:
    """RFC 7662 for confidential clients, each about its own tokens."""
    return _token_endpoint_response(lambda: oauth_server().create_endpoint_response("introspection"))


@bp.route("/userinfo", methods=["GET", "POST"])
@csrf.exempt
def userinfo() -> Response:
    built = services()
    try:
        access = built.access_tokens().verify(request.headers.get("Authorization", ""))
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
    note_request(account_id=access.account.id, client_id=access.client_id)
    response = jsonify(built.claims().for_scope(access.account, access.scope))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/jwks.json")
def jwks() -> Response:
    built = services()
    body, etag = built.keys.public_jwks_json()
    response = Response(body, mimetype="application/json")
    # Below the next key's lead time: caches learn a key before it signs (idp.keys.rotation).
    response.headers["Cache-Control"] = f"public, max-age={built.settings.jwks_max_age}"
    response.set_etag(etag)
    return response.make_conditional(request)


@bp.get("/.well-known/openid-configuration")
def openid_configuration() -> Response:
    built = services()
    response = jsonify(
        discovery_document(built.settings, id_token_algorithms=built.keys.supported_algorithms())
    )
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
