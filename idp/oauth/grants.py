"""Authlib's grants, with our storage hooks: each hook a few lines that ask the domain.

The code is consumed in ``authenticate_user``, which Authlib calls once the client is
authenticated and ``redirect_uri`` and PKCE are checked: a wrong secret or verifier leaves the
code usable. The consumption is one atomic statement (``AuthorizationCodes.consume``), and what the
code begets is stored in the same transaction by ``save_token`` (DESIGN, "Known pitfalls").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from authlib.oauth2.rfc6749 import OAuth2Request, grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode, UserInfo

from idp.accounts.models import Account
from idp.db import new_id
from idp.oauth.codes import SignedInUser
from idp.oauth.families import FoundRefreshToken, RefreshTokenRejected
from idp.oauth.models import AuthorizationCode, Client
from idp.oauth.scopes import scope_list

if TYPE_CHECKING:
    from idp.services import Services

CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
TOKEN_AUTH_METHODS = [*CONFIDENTIAL_AUTH_METHODS, "none"]


@dataclass(frozen=True)
class Grantee:
    """Who the tokens of one grant are issued to, and the family they join (Authlib's "user")."""

    account: Account
    family_id: str
    # The staff member emulating the account when the grant was made (RFC 8693 ``act``).
    acting_staff_id: str | None = None

    def get_user_id(self) -> str:
        return self.account.id


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

    @property
    def services(self) -> Services:
        services: Services = self.server.services
        return services

    def validate_authorization_request(self) -> str:
        # Authlib's create_authorization_response validates again the request that get_consent_grant
        # validated on this same grant (a second client look-up and nonce replay check): once will do.
        if self.redirect_uri is not None:
            return str(self.redirect_uri)
        return str(super().validate_authorization_request())

    def generate_authorization_code(self) -> str:
        return self.services.codes().new_code()

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        user: SignedInUser = request.user
        data = request.payload.data
        services = self.services
        services.codes().save(
            code,
            client=request.client,
            user=user,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
        )
        if user.session_id is not None:
            services.sessions().remember_client(user.session_id, request.client.client_id)

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        return self.services.codes().find(code, client.client_id)

    def authenticate_user(self, code: AuthorizationCode) -> Grantee:
        if code.used_at is not None:
            self._refuse_replay(code)
        if not code.account.is_available(self.services.clock.now()):
            raise InvalidGrantError("The account behind this code is not available.")
        # Authlib would issue twice for two concurrent redemptions; one UPDATE decides the winner.
        if not self.services.codes().consume(code):
            self._refuse_replay(code)
        return Grantee(code.account, family_id=new_id(), acting_staff_id=code.acting_staff_id)

    def _refuse_replay(self, code: AuthorizationCode) -> None:
        self.services.families().refuse_replay(code)
        raise InvalidGrantError("The authorization code has already been used.")

    def delete_authorization_code(self, code: AuthorizationCode) -> None:
        # Consumed, not deleted: the used row stays until it expires, so that a replay is recognised.
        return None

    def generate_token(
        self,
        user: Grantee | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        # A refresh token only where offline access was granted for this code (DESIGN "Claims").
        offline = include_refresh_token and "offline_access" in scope_list(scope)
        token: dict[str, Any] = super().generate_token(user, scope, grant_type, expires_in, offline)
        return token


class RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    """Rotation on every use; reuse of a rotated token revokes its family (RFC 9700 4.14.2)."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = TOKEN_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    @property
    def services(self) -> Services:
        services: Services = self.server.services
        return services

    def authenticate_refresh_token(self, refresh_token: str) -> FoundRefreshToken:
        # Rotated here, atomically, so that of two requests with one token only one goes on.
        try:
            return self.services.families().rotate(refresh_token, client_id=self.request.client.client_id)
        except RefreshTokenRejected as rejected:
            raise InvalidGrantError(rejected.description) from None

    def authenticate_user(self, refresh_token: FoundRefreshToken) -> Grantee:
        account = self.services.session.get(Account, refresh_token.family.account_id)
        if account is None or not account.is_available(self.services.clock.now()):
            raise InvalidGrantError("The account behind this refresh token is not available.")
        family = refresh_token.family
        return Grantee(account, family_id=family.id, acting_staff_id=family.acting_staff_id)

    def revoke_old_credential(self, refresh_token: FoundRefreshToken) -> None:
        # Already rotated by authenticate_refresh_token.
        return None


class AdminClientCredentials(grants.ClientCredentialsGrant):  # type: ignore[misc]
    """RFC 6749 4.4 for admin API clients (``Client.check_grant_type``), with ``admin:read`` or
    ``admin:write`` up to the client's own; no refresh token (Authlib issues none here)."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = CONFIDENTIAL_AUTH_METHODS

    def validate_requested_scope(self) -> None:
        # The server-wide check knows only the OIDC scopes; an admin token is for exactly one scope.
        client: Client = self.request.client
        if not client.allows_admin_scope(self.request.payload.scope):
            raise InvalidScopeError(f"Ask for one scope: admin:read, or {client.admin_scope} at most.")


class OpenIDConnect(OpenIDCode):  # type: ignore[misc]
    """The ID token of a code exchange, signed by the domain (``IdTokens``)."""

    def __init__(self, services: Services) -> None:
        super().__init__(require_nonce=False)
        self.services = services

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return bool(self.services.codes().nonce_used(request.payload.client_id, nonce))

    def generate_user_info(self, user: Grantee, scope: str) -> UserInfo:
        return UserInfo(self.services.claims().for_scope(user.account, scope))

    def encode_id_token(self, token: dict[str, Any], request: OAuth2Request) -> str:
        code: AuthorizationCode = request.authorization_code
        return str(
            self.services.id_tokens().sign(
                request.client,
                request.user.account,
                token["scope"],
                auth_time=code.auth_time,
                access_token=token["access_token"],
                nonce=code.nonce,
                sid=code.sid,
                acting_staff_id=code.acting_staff_id,
            )
        )


class RefreshedIdToken:
    """An ID token with each refresh (OIDC Core 12.2): same sub, aud and auth_time, no nonce."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def __call__(self, grant: RefreshGrant) -> None:
        grant.register_hook("after_create_token_response", self.process_token)

    def process_token(self, grant: RefreshGrant, response: Any) -> Any:
        _, token, _ = response
        if "openid" not in scope_list(token.get("scope")):
            return token
        family = grant.request.refresh_token.family
        token["id_token"] = self.services.id_tokens().sign(
            grant.request.client,
            grant.request.user.account,
            token["scope"],
            auth_time=family.auth_time,
            access_token=token["access_token"],
            sid=family.sid,
            acting_staff_id=family.acting_staff_id,
        )
        return token
