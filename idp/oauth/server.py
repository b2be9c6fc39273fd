"""The Authlib wiring: the one module that knows Authlib. Each hook delegates to the domain."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, cast

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Request, grants
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode, UserInfo
from authlib.oidc.core.util import create_half_hash
from flask import Flask, current_app
from flask import request as flask_request
from sqlalchemy import CursorResult, exists, select, update

from idp.accounts.models import Account
from idp.audit import audit
from idp.extensions import db
from idp.keyring import KeyRing
from idp.oauth.claims import without_reserved
from idp.oauth.models import AuthorizationCode, Client
from idp.oauth.scopes import SUPPORTED_SCOPES
from idp.runtime import EXTENSION_KEY as RUNTIME_KEY
from idp.runtime import runtime
from idp.tokens import new_secret, secret_hash

MAX_CLIENT_ID_LENGTH = 64


@dataclass(frozen=True)
class SignedInUser:
    """The user granting an authorization request, with the real time they authenticated."""

    account: Account
    auth_time: datetime


class OAuthServer(AuthorizationServer):  # type: ignore[misc]
    def create_oauth2_request(self, request: Any) -> Any:
        # Resumed requests (after sign-in or consent) are rebuilt from their stored row.
        if isinstance(request, OAuth2Request):
            return request
        return super().create_oauth2_request(request)

    def create_token_response(self, request: Any = None) -> Any:
        # Authlib lets a non-ASCII Basic value or non-UTF-8 credentials raise (a 500 otherwise).
        if not basic_credentials_readable(flask_request.headers.get("Authorization")):
            error = InvalidClientError(status_code=401, description="The client credentials are unreadable.")
            return self.handle_error_response(None, error)
        return super().create_token_response(request)


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


def query_client(client_id: str | None) -> Client | None:
    # NUL is in no client id, and PostgreSQL refuses it in a query parameter (an error, not a miss).
    if not client_id or len(client_id) > MAX_CLIENT_ID_LENGTH or "\x00" in client_id:
        return None
    return db.session.execute(select(Client).where(Client.client_id == client_id)).scalar_one_or_none()


def save_token(token: dict[str, Any], request: OAuth2Request) -> None:
    # Access tokens are self-contained JWTs: nothing to store until refresh tokens arrive.
    audit(
        db.session,
        "access_token.issued",
        account_id=request.user.id if request.user else None,
        client_id=request.client.client_id,
        scope=token.get("scope"),
    )


def generate_access_token(
    grant_type: str,
    client: Client,
    user: Account | None = None,
    scope: str | None = None,
    expires_in: int | None = None,
    include_refresh_token: bool = True,
) -> dict[str, Any]:
    """An RFC 9068 JWT access token, signed like ID tokens but typed ``at+jwt``."""
    rt = runtime()
    now = rt.clock.now()
    life = int(rt.token_policy.access_token_life.total_seconds())
    claims = {
        "iss": rt.settings.issuer,
        "sub": user.id if user else client.client_id,
        "aud": rt.settings.issuer + "/userinfo",
        "client_id": client.client_id,
        "scope": scope or "",
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + life,
        "jti": new_secret("at").removeprefix("at_")[:22],
    }
    access_token = rt.keys().sign(claims, alg="RS256", typ="at+jwt")
    return {
        "token_type": "Bearer",
        "access_token": access_token,
        "expires_in": life,
        "scope": scope,
    }


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
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "client_secret_post", "none"]

    def generate_authorization_code(self) -> str:
        return new_secret("ac")

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        rt = runtime()
        user: SignedInUser = request.user
        now = rt.clock.now()
        data = request.payload.data
        row = AuthorizationCode(
            code_hash=secret_hash(code),
            client_id=request.client.client_id,
            account_id=user.account.id,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            nonce=data.get("nonce"),
            auth_time=user.auth_time,
            code_challenge=data.get("code_challenge"),
            code_challenge_method="S256" if data.get("code_challenge") else None,
            created_at=now,
            expires_at=now + rt.token_policy.code_life,
        )
        db.session.add(row)
        audit(
            db.session,
            "authorization_code.issued",
            account_id=user.account.id,
            client_id=request.client.client_id,
        )

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        if not code or len(code) > 200:
            return None
        return db.session.execute(
            select(AuthorizationCode).where(
                AuthorizationCode.code_hash == secret_hash(code),
                AuthorizationCode.client_id == client.client_id,
                AuthorizationCode.expires_at > runtime().clock.now(),
            )
        ).scalar_one_or_none()

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        # Kept until expiry so that a replay is recognised; authenticate_user consumed it.
        return None

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Account:
        # Authlib would issue twice for two concurrent redemptions; one UPDATE decides the winner.
        # It runs after client authentication, redirect_uri and PKCE checks, in the transaction
        # that commits with the token response.
        consumed = db.session.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.id == authorization_code.id, AuthorizationCode.used_at.is_(None))
            .values(used_at=runtime().clock.now())
            .execution_options(synchronize_session=False)
        )
        if cast(CursorResult[Any], consumed).rowcount != 1:
            audit(
                db.session,
                "authorization_code.replayed",
                account_id=authorization_code.account_id,
                client_id=authorization_code.client_id,
            )
            raise InvalidGrantError("The authorization code has already been used.")
        account = db.session.get(Account, authorization_code.account_id)
        if account is None:
            raise InvalidGrantError("The account behind this code no longer exists.")
        return account


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
        """Sign the ID token with the active key of the client's algorithm and an explicit kid."""
        rt = runtime()
        client: Client = request.client
        code: AuthorizationCode = request.authorization_code
        alg = client.id_token_signed_response_alg
        now = int(rt.clock.now().timestamp())
        claims = without_reserved(self.generate_user_info(request.user, token["scope"]))
        claims.update(
            iss=rt.settings.issuer,
            sub=request.user.id,
            aud=client.client_id,
            iat=now,
            exp=now + int(rt.token_policy.id_token_life.total_seconds()),
            auth_time=code.get_auth_time(),
            amr=code.get_amr(),
        )
        if code.nonce:
            claims["nonce"] = code.nonce
        # OIDC Core 3.1.3.6: at_hash is the left half of the hash of the access token.
        at_hash = create_half_hash(token["access_token"], alg)
        if at_hash is not None:
            claims["at_hash"] = at_hash.decode("ascii")
        return rt.keys().sign(claims, alg=alg)


SERVER_KEY = "idp.oauth_server"


def init_oauth(app: Flask) -> None:
    """Load the key set, then build this app's Authlib server with our grants and tokens."""
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
    server.register_token_generator("default", generate_access_token)
    server.register_grant(CodeGrant, [S256CodeChallenge(required=True), OpenIDConnect()])
    app.extensions[SERVER_KEY] = server


def oauth_server() -> OAuthServer:
    server: OAuthServer = current_app.extensions[SERVER_KEY]
    return server
