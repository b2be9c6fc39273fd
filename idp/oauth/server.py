"""The Authlib authorization server: our grants, endpoints and token generator.

The one place that knows how Authlib fits together; each hook delegates to ``Services``. The web
layer binds it to the app (``idp.web.app.init_oauth``).
"""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from authlib.oauth2.rfc9207 import IssuerParameter
from joserfc.jwk import KeySet

from idp.audit import audit
from idp.oauth.access import FAMILY_CLAIM
from idp.oauth.endpoints import EndSession, Introspection, Revocation
from idp.oauth.families import new_refresh_token
from idp.oauth.grants import (
    AdminClientCredentials,
    CodeGrant,
    Grantee,
    OpenIDConnect,
    RefreshedIdToken,
    RefreshGrant,
    S256CodeChallenge,
)
from idp.oauth.id_tokens import act_claim
from idp.oauth.models import Client
from idp.oauth.scopes import admin_api_audience
from idp.services import Services

MAX_CLIENT_ID_LENGTH = 64


class OAuthServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, services: Services) -> None:
        super().__init__()
        self.services = services
        self.register_grant(CodeGrant, [S256CodeChallenge(required=True), OpenIDConnect(services)])
        self.register_grant(RefreshGrant, [RefreshedIdToken(services)])
        self.register_grant(AdminClientCredentials)
        self.register_endpoint(Revocation)
        self.register_endpoint(Introspection)
        self.register_endpoint(EndSession)
        self.issuer_parameter = Issuer(services.settings.issuer)
        self.register_extension(self.issuer_parameter)

    def create_bearer_token_generator(self, config: Any) -> AccessTokenGenerator:
        return AccessTokenGenerator(self.services)

    def query_client(self, client_id: str | None) -> Client | None:
        # NUL is in no client id, and PostgreSQL refuses it in a query parameter (an error, not a miss).
        if not client_id or len(client_id) > MAX_CLIENT_ID_LENGTH or "\x00" in client_id:
            return None
        return self.services.clients().find(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        families = self.services.families()
        if request.user is None:
            # Client credentials: a machine client's own token, no account, no family to store.
            audit(
                self.services.session,
                "access_token.issued",
                client_id=request.client.client_id,
                scope=token.get("scope"),
                grant_type=request.payload.grant_type,
            )
            return
        if request.authorization_code is not None:
            families.start(
                request.user.family_id, request.authorization_code, refresh_token=token.get("refresh_token")
            )
        elif "refresh_token" in token:
            families.add_refresh_token(request.refresh_token.family, token["refresh_token"])
        audit(
            self.services.session,
            "access_token.issued",
            account_id=request.user.account.id,
            client_id=request.client.client_id,
            scope=token.get("scope"),
            grant_type=request.payload.grant_type,
        )

    def create_oauth2_request(self, request: Any) -> Any:
        # A request that waited for a sign-in or a consent is resumed from its stored parameters.
        if isinstance(request, OAuth2Request):
            return request
        return super().create_oauth2_request(request)


class AccessTokenGenerator(JWTBearerTokenGenerator):  # type: ignore[misc]
    """RFC 9068 access tokens, signed like ID tokens, naming the family they belong to."""

    def __init__(self, services: Services) -> None:
        life = int(services.token_policy.access_token_life.total_seconds())
        super().__init__(
            issuer=services.settings.issuer,
            alg="RS256",
            refresh_token_generator=lambda **_: new_refresh_token(),
            expires_generator=life,
        )
        self.services = services
        self.life = life

    def get_jwks(self) -> KeySet:
        return self.services.keys.signing_key_set("RS256")

    def get_audiences(self, client: Client, user: Grantee | None, scope: str) -> str:
        # No user: a client credentials token, good only at the admin API (sub is the client_id).
        if user is None:
            return admin_api_audience(self.services.settings.issuer)
        return self.services.settings.issuer + "/userinfo"

    def get_extra_claims(
        self, client: Client, grant_type: str, user: Grantee | None, scope: str
    ) -> dict[str, Any]:
        # Authlib times tokens by time.time(); the injected clock decides here (tests freeze it).
        now = int(self.services.clock.now().timestamp())
        if user is None:
            return {"iat": now, "exp": now + self.life}
        claims: dict[str, Any] = {"iat": now, "exp": now + self.life, FAMILY_CLAIM: user.family_id}
        if user.acting_staff_id:
            claims["act"] = act_claim(user.acting_staff_id)
        return claims


class Issuer(IssuerParameter):  # type: ignore[misc]
    """RFC 9207: every authorization response, success or error, names the issuer."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer
