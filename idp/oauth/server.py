"""The Authlib wiring: the one module that knows Authlib. Each hook delegates to the domain."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Request, grants
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Error,
)
from authlib.oauth2.rfc6749.hooks import hooked
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import OpenIDCode, UserInfo
from flask import Flask, current_app
from flask import request as flask_request
from sqlalchemy import bindparam, exists, select
from werkzeug.wrappers import Response

from idp.accounts.models import Account, AccountStatus
from idp.audit import audit, audit_values
from idp.db import new_id
from idp.extensions import db
from idp.keyring import KeyRing
from idp.oauth.access import ACCESS_TOKEN_TYPE, FAMILY_CLAIM, InspectedToken, inspect_token
from idp.oauth.claims import AccountClaims, ClaimsAccount
from idp.oauth.discovery import discovery_bytes
from idp.oauth.documents import (
    DISCOVERY_PATH,
    JWKS_PATH,
    PrecomputedDocuments,
    discovery_source,
    jwks_source,
)
from idp.oauth.families import FoundRefreshToken, RefreshTokenRejected, RefreshTokenReused
from idp.oauth.id_tokens import id_token_claims
from idp.oauth.models import AnyClient, AuthorizationCode, Client, RefreshTokenFamily
from idp.oauth.redemption import RedeemableCode, find_client_with_code, find_redeemable_code
from idp.oauth.scopes import SUPPORTED_SCOPES, scope_list
from idp.runtime import EXTENSION_KEY as RUNTIME_KEY
from idp.runtime import runtime
from idp.students.guardianship import LinkedStudent
from idp.tokens import new_secret, secret_hash

MAX_CLIENT_ID_LENGTH = 64
# new_secret makes 46 characters; anything much longer is not one of ours.
MAX_CODE_LENGTH = 200
CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
TOKEN_AUTH_METHODS = [*CONFIDENTIAL_AUTH_METHODS, "none"]


@dataclass(frozen=True)
class SignedInUser:
    """The user granting an authorization request: when they authenticated, in which session,
    and whether offline access may be granted (consented, or a first-party client)."""

    account: Account
    auth_time: datetime
    session_id: str | None = None
    sid: str | None = None
    offline_access: bool = False


@dataclass
class _CodeLookup:
    """A code exchange's request to read the client with the code it presents (CodeGrant)."""

    code_hash: str
    now: datetime
    client_id: str | None = None
    code: RedeemableCode | None = None


_CODE_LOOKUP: ContextVar[_CodeLookup | None] = ContextVar("idp_code_lookup", default=None)


class OAuthServer(AuthorizationServer):  # type: ignore[misc]
    def query_client(self, client_id: str | None) -> AnyClient | None:
        # During a code exchange's client authentication: the client and its code, one statement.
        lookup = _CODE_LOOKUP.get()
        if lookup is None or client_id is None or not _usable_client_id(client_id):
            return query_client(client_id)
        client, lookup.code = find_client_with_code(
            db.session, client_id=client_id, code_hash=lookup.code_hash, now=lookup.now
        )
        lookup.client_id = client_id
        return client

    def create_oauth2_request(self, request: Any) -> Any:
        # Resumed requests (after sign-in or consent) are rebuilt from their stored row.
        if isinstance(request, OAuth2Request):
            return request
        return super().create_oauth2_request(request)

    def create_token_response(self, request: Any = None) -> Any:
        unreadable = _unreadable_credentials(self)
        return unreadable if unreadable is not None else super().create_token_response(request)

    def create_endpoint_response(self, name: str, request: Any = None) -> Any:
        unreadable = _unreadable_credentials(self)
        return unreadable if unreadable is not None else super().create_endpoint_response(name, request)

    # RFC 9207: every authorization response, success or error, names the issuer.
    def create_authorization_response(
        self, request: Any = None, grant_user: Any = None, grant: Any = None
    ) -> Any:
        response = super().create_authorization_response(request=request, grant_user=grant_user, grant=grant)
        return with_issuer(response)

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Any:
        response = super().handle_error_response(request, error)
        return with_issuer(response) if error.redirect_uri else response


def _unreadable_credentials(server: OAuthServer) -> Response | None:
    # Authlib lets a non-ASCII Basic value or non-UTF-8 credentials raise (a 500 otherwise).
    if basic_credentials_readable(flask_request.headers.get("Authorization")):
        return None
    error = InvalidClientError(status_code=401, description="The client credentials are unreadable.")
    response: Response = server.handle_error_response(None, error)
    return response


def with_issuer(response: Response) -> Response:
    """Add ``iss`` to a redirect back to the client, once (RFC 9207 2)."""
    location = response.headers.get("Location")
    if response.status_code != 302 or not location:
        return response
    parts = urlsplit(location)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(name == "iss" for name, _ in query):
        return response
    query.append(("iss", runtime().settings.issuer))
    response.headers["Location"] = parts._replace(query=urlencode(query)).geturl()
    return response


def basic_credentials_readable(header: str | None) -> bool:
    """False only for a Basic header that Authlib would fail on instead of refusing."""
    parts = (header or "").split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "basic":
        return True
    try:
        base64.b64decode(parts[1]).decode("utf-8")
    except binascii.Error:
        return True  # bad base64: Authlib answers invalid_client itself
    except ValueError:  # non-ASCII base64 text, or credentials that are not UTF-8
        return False
    return True


# Built once: constructing a statement costs more than running it.
_CLIENT_BY_ID = select(Client).where(Client.client_id == bindparam("client_id"))


def _usable_client_id(client_id: str | None) -> bool:
    # NUL is in no client id, and PostgreSQL refuses it in a query parameter (an error, not a miss).
    return client_id is not None and 0 < len(client_id) <= MAX_CLIENT_ID_LENGTH and "\x00" not in client_id


def query_client(client_id: str | None) -> Client | None:
    if not _usable_client_id(client_id):
        return None
    return db.session.execute(_CLIENT_BY_ID, {"client_id": client_id}).scalar_one_or_none()


def save_token(token: dict[str, Any], request: OAuth2Request) -> None:
    # The grants store what they issue (families, refresh tokens); access tokens are JWTs.
    # (The code grant records its issue with the redemption itself: CodeGrant.create_token_response.)
    audit(
        db.session,
        "access_token.issued",
        account_id=request.user.id if request.user else None,
        client_id=request.client.client_id,
        scope=token.get("scope"),
        grant_type=request.payload.grant_type,
    )


def access_token_response(
    client: AnyClient, user: ClaimsAccount, scope: str, *, family_id: str
) -> dict[str, Any]:
    """An RFC 9068 JWT access token, signed like ID tokens but typed ``at+jwt``, naming its family."""
    rt = runtime()
    now = int(rt.clock.now().timestamp())
    life = int(rt.token_policy.access_token_life.total_seconds())
    claims = {
        "iss": rt.settings.issuer,
        "sub": user.id,
        "aud": rt.settings.issuer + "/userinfo",
        "client_id": client.client_id,
        "scope": scope,
        "iat": now,
        "exp": now + life,
        "jti": new_secret("at").removeprefix("at_")[:22],
        FAMILY_CLAIM: family_id,
    }
    access_token = rt.keys().sign(claims, alg="RS256", typ=ACCESS_TOKEN_TYPE)
    return {"token_type": "Bearer", "access_token": access_token, "expires_in": life, "scope": scope}


def _commit_then_refuse(description: str) -> InvalidGrantError:
    # A revocation decided while refusing must outlive the error (the token view rolls back errors).
    db.session.commit()
    return InvalidGrantError(description)


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 only, required unless the client is a registered legacy exception."""

    # Authlib defaults a missing code_challenge_method to plain; we accept only S256.
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        client: Client = grant.request.client
        if not data.get("code_challenge"):
            if client.require_pkce or client.is_public:
                raise InvalidRequestError("PKCE is required: send code_challenge with S256.")
            return
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = TOKEN_AUTH_METHODS

    def generate_authorization_code(self) -> str:
        return new_secret("ac")

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        rt = runtime()
        user: SignedInUser = request.user
        client: Client = request.client
        now = rt.clock.now()
        data = request.payload.data
        scope = scope_list(request.scope)
        if not user.offline_access:
            # DESIGN "Claims": offline_access is dropped silently where it cannot be granted.
            scope = [s for s in scope if s != "offline_access"]
        row = AuthorizationCode(
            code_hash=secret_hash(code),
            client_id=client.client_id,
            account_id=user.account.id,
            redirect_uri=request.payload.redirect_uri,
            scope=" ".join(scope),
            nonce=data.get("nonce"),
            auth_time=user.auth_time,
            code_challenge=data.get("code_challenge"),
            code_challenge_method="S256" if data.get("code_challenge") else None,
            created_at=now,
            expires_at=now + rt.token_policy.code_life,
            sid=user.sid,
        )
        db.session.add(row)
        if user.session_id is not None:
            rt.sessions().remember_client(user.session_id, client.client_id)
        audit(db.session, "authorization_code.issued", account_id=user.account.id, client_id=client.client_id)

    # Set while this grant authenticates its client (authenticate_token_endpoint_client).
    _lookup: _CodeLookup | None = None

    def authenticate_token_endpoint_client(self) -> AnyClient:
        # The client and the code it presents are read in one statement (idp.oauth.redemption,
        # through OAuthServer.query_client). Authlib authenticates the client as usual; the code
        # is looked at only afterwards, by query_authorization_code, for that client alone.
        code = self.request.form.get("code")
        if not isinstance(code, str) or not code or len(code) > MAX_CODE_LENGTH:
            plain: AnyClient = super().authenticate_token_endpoint_client()
            return plain
        self._lookup = _CodeLookup(secret_hash(code), runtime().clock.now())
        reset = _CODE_LOOKUP.set(self._lookup)
        try:
            client: AnyClient = super().authenticate_token_endpoint_client()
        finally:
            _CODE_LOOKUP.reset(reset)
        return client

    def query_authorization_code(self, code: str, client: AnyClient) -> RedeemableCode | None:
        # The code with its account and students, in one statement (idp.oauth.redemption).
        if not code or len(code) > MAX_CODE_LENGTH:
            return None
        code_hash = secret_hash(code)
        lookup = self._lookup
        if lookup is not None and (lookup.client_id, lookup.code_hash) == (client.client_id, code_hash):
            return lookup.code
        return find_redeemable_code(
            db.session, code_hash=code_hash, client_id=client.client_id, now=runtime().clock.now()
        )

    def authenticate_user(self, authorization_code: RedeemableCode) -> AccountClaims:
        account = authorization_code.account
        if account.status is AccountStatus.DISABLED:
            raise InvalidGrantError("The account behind this code is not available.")
        return account

    @hooked  # type: ignore[untyped-decorator]
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """Redeem the code: consume it and store what it begets in one step, commit, then sign.

        By now the client is authenticated and redirect_uri and PKCE are checked
        (validate_token_request and its hooks), so a wrong secret or verifier never reaches the
        consumption. Authlib's own order (authenticate_user, generate_token, save_token) would
        consume the code with a statement of its own and sign both tokens inside the
        transaction, holding SQLite's one write lock across two RSA signatures.
        """
        rt = runtime()
        code: RedeemableCode = self.request.authorization_code
        client: AnyClient = self.request.client
        if code.used_at is not None:
            self._refuse_replay(code)
        # Checked before the write: on PostgreSQL the write commits by itself (autocommit).
        user = self.authenticate_user(code)
        self.request.user = user
        scope = code.get_scope()
        # Authlib would issue twice for two concurrent redemptions; one UPDATE decides the winner.
        issued = rt.families().redeem_code(
            code_id=code.id,
            family_id=new_id(),
            client_id=client.client_id,
            account_id=user.id,
            sid=code.sid,
            scope=scope,
            auth_time=code.auth_time,
            offline=client.check_grant_type("refresh_token") and "offline_access" in scope_list(scope),
            audit_row=audit_values(
                "access_token.issued",
                account_id=user.id,
                client_id=client.client_id,
                scope=scope,
                grant_type=self.GRANT_TYPE,
            ),
        )
        if issued is None:  # used since it was read
            self._refuse_replay(code)
        db.session.commit()
        token = access_token_response(client, user, scope, family_id=issued.family_id)
        if issued.refresh_token is not None:
            token["refresh_token"] = issued.refresh_token
        return 200, token, self.TOKEN_RESPONSE_HEADER

    def _refuse_replay(self, code: RedeemableCode) -> NoReturn:
        """RFC 6749 4.1.2 / RFC 9700 4.2.4: a replay revokes what the first redemption issued."""
        audit(db.session, "authorization_code.replayed", account_id=code.account.id, client_id=code.client_id)
        rt = runtime()
        rt.families().revoke_for_code(code.id, reason="authorization_code_replayed")
        raise _commit_then_refuse("The authorization code has already been used.")


class RefreshCredential:
    """A rotated refresh token as Authlib's refresh grant sees it."""

    def __init__(self, found: FoundRefreshToken) -> None:
        self.family: RefreshTokenFamily = found.family

    def check_client(self, client: Client) -> bool:
        return self.family.client_id == client.client_id

    def get_scope(self) -> str:
        return self.family.scope


class RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    """Rotation on every use; reuse of a rotated token revokes its family (RFC 9700 4.14.2)."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = TOKEN_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshCredential:
        client: Client = self.request.client
        try:
            found = runtime().families().rotate(refresh_token, client_id=client.client_id)
        except RefreshTokenReused as reused:
            raise _commit_then_refuse(reused.description) from None
        except RefreshTokenRejected as rejected:
            raise InvalidGrantError(rejected.description) from None
        return RefreshCredential(found)

    def authenticate_user(self, refresh_token: RefreshCredential) -> Account:
        account = db.session.get(Account, refresh_token.family.account_id)
        if account is None or account.status is AccountStatus.DISABLED:
            raise InvalidGrantError("The account behind this refresh token is not available.")
        return account

    def generate_token(
        self,
        user: Account | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        assert user is not None
        family = self.request.refresh_token.family
        token = access_token_response(self.request.client, user, scope or "", family_id=family.id)
        # RFC 6749 6: the new refresh token keeps the family's scope, whatever the access token's.
        token["refresh_token"] = runtime().families().issue_next(family)
        return token

    def revoke_old_credential(self, refresh_token: RefreshCredential) -> None:
        # Already rotated, atomically, by authenticate_refresh_token.
        return None


def sign_id_token(
    client: AnyClient,
    account: ClaimsAccount,
    scope: str,
    *,
    auth_time: datetime,
    access_token: str | None,
    nonce: str | None = None,
    sid: str | None = None,
    students: Sequence[LinkedStudent] | None = None,
) -> str:
    """Sign an ID token with the active key of the client's algorithm and an explicit kid."""
    rt = runtime()
    alg = client.id_token_signed_response_alg
    claims = id_token_claims(
        rt.claims().for_scope(account, scope, students=students),
        issuer=rt.settings.issuer,
        sub=account.id,
        client_id=client.client_id,
        auth_time=auth_time,
        now=rt.clock.now(),
        policy=rt.token_policy,
        alg=alg,
        access_token=access_token,
        nonce=nonce,
        sid=sid,
    )
    return rt.keys().sign(claims, alg=alg)


class OpenIDConnect(OpenIDCode):  # type: ignore[misc]
    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return bool(
            db.session.execute(
                select(
                    exists().where(
                        AuthorizationCode.client_id == request.payload.client_id,
                        AuthorizationCode.nonce == nonce,
                    )
                )
            ).scalar()
        )

    def generate_user_info(self, user: Account, scope: str) -> UserInfo:
        return UserInfo(runtime().claims().for_scope(user, scope))

    def encode_id_token(self, token: dict[str, Any], request: OAuth2Request) -> str:
        code: RedeemableCode = request.authorization_code
        return sign_id_token(
            request.client,
            request.user,
            token["scope"],
            auth_time=code.auth_time,
            access_token=token["access_token"],
            nonce=code.nonce,
            sid=code.sid,
            students=code.students,
        )


class RefreshedIdToken:
    """An ID token with each refresh (OIDC Core 12.2): same sub, aud and auth_time, no nonce."""

    def __call__(self, grant: RefreshGrant) -> None:
        grant.register_hook("after_create_token_response", self.process_token)

    def process_token(self, grant: RefreshGrant, response: Any) -> Any:
        _, token, _ = response
        if "openid" not in scope_list(token.get("scope")):
            return token
        family = grant.request.refresh_token.family
        token["id_token"] = sign_id_token(
            grant.request.client,
            grant.request.user,
            token["scope"],
            auth_time=family.auth_time,
            access_token=token["access_token"],
            sid=family.sid,
        )
        return token


def _require_token(request: OAuth2Request) -> None:
    # A hint is only a hint: an unknown one widens the search instead of failing (RFC 7009 2.1,
    # RFC 7662 2.1); Authlib would answer it with a 401.
    if not isinstance(request.form.get("token"), str):
        raise InvalidRequestError("The token parameter is required.")


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009. Revoking either kind of token revokes its family: the refresh tokens and every
    access token issued with them (RFC 7009 2.1 allows both directions)."""

    CLIENT_AUTH_METHODS: ClassVar[list[str]] = TOKEN_AUTH_METHODS

    def check_params(self, request: OAuth2Request, client: Client) -> None:
        _require_token(request)

    def query_token(self, token_string: str, token_type_hint: str | None) -> InspectedToken | None:
        return inspect_token(token_string)

    def revoke_token(self, token: InspectedToken, request: OAuth2Request) -> None:
        if token.family_id is not None:
            runtime().families().revoke_by_id(token.family_id, reason="revoked_by_client")


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    """RFC 7662 for confidential clients, each about its own tokens only."""

    CLIENT_AUTH_METHODS: ClassVar[list[str]] = CONFIDENTIAL_AUTH_METHODS

    def check_params(self, request: OAuth2Request, client: Client) -> None:
        _require_token(request)

    def query_token(self, token_string: str, token_type_hint: str | None) -> InspectedToken | None:
        return inspect_token(token_string)

    def check_permission(self, token: InspectedToken, client: Client, request: OAuth2Request) -> bool:
        # Another client's token is reported inactive, as an unknown one is (RFC 7662 2.2).
        return token.check_client(client)

    def create_introspection_payload(self, token: InspectedToken | None) -> dict[str, Any]:
        if token is None or not token.active:
            return {"active": False}
        payload = {name: value for name, value in token.claims.items() if value is not None}
        return {"active": True, **payload}


SERVER_KEY = "idp.oauth_server"
DISCOVERY_KEY = "idp.discovery"


def init_oauth(app: Flask) -> None:
    """Load the key set, then build this app's Authlib server with our grants and endpoints."""
    rt = app.extensions[RUNTIME_KEY]
    settings = rt.settings
    rt.keyring = KeyRing(
        settings.keys_dir,
        clock=rt.clock,
        passphrase=settings.keys_passphrase,
        check_seconds=settings.keys_check_seconds,
    )
    app.config["OAUTH2_SCOPES_SUPPORTED"] = list(SUPPORTED_SCOPES)
    server = OAuthServer()
    server.init_app(app, query_client=query_client, save_token=save_token)
    server.register_grant(CodeGrant, [S256CodeChallenge(required=True), OpenIDConnect()])
    server.register_grant(RefreshGrant, [RefreshedIdToken()])
    server.register_endpoint(Revocation)
    server.register_endpoint(Introspection)
    app.extensions[SERVER_KEY] = server
    discovery = discovery_bytes(settings, id_token_algorithms=rt.keyring.supported_algorithms())
    app.extensions[DISCOVERY_KEY] = discovery
    app.wsgi_app = PrecomputedDocuments(  # type: ignore[method-assign]
        app.wsgi_app,
        {
            DISCOVERY_PATH: discovery_source(discovery),
            JWKS_PATH: jwks_source(rt.keys, settings.jwks_max_age),
        },
    )


def oauth_server() -> OAuthServer:
    server: OAuthServer = current_app.extensions[SERVER_KEY]
    return server
