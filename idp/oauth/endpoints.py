"""Authlib's endpoints with our hooks: revocation (RFC 7009), introspection (RFC 7662) and
RP-Initiated Logout 1.0."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.rpinitiated import EndSessionEndpoint, EndSessionRequest

from idp.oauth.access import InspectedToken
from idp.oauth.grants import CONFIDENTIAL_AUTH_METHODS, TOKEN_AUTH_METHODS
from idp.oauth.id_tokens import InvalidIdTokenHint
from idp.oauth.models import Client

if TYPE_CHECKING:
    from idp.services import Services


def _services(endpoint: Any) -> Services:
    services: Services = endpoint.server.services
    return services


def _require_token(request: OAuth2Request) -> None:
    # A hint is only a hint: an unknown one widens the search instead of failing (RFC 7009 2.1,
    # RFC 7662 2.1); Authlib would answer it with a 401.
    if not isinstance(request.form.get("token"), str):
        raise InvalidRequestError("The token parameter is required.")


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    """Revoking either kind of token revokes its family: the refresh tokens and every access token
    issued with them (RFC 7009 2.1 allows both directions)."""

    CLIENT_AUTH_METHODS: ClassVar[list[str]] = TOKEN_AUTH_METHODS

    def check_params(self, request: OAuth2Request, client: Client) -> None:
        _require_token(request)

    def query_token(self, token_string: str, token_type_hint: str | None) -> InspectedToken | None:
        return _services(self).access_tokens().inspect(token_string)

    def revoke_token(self, token: InspectedToken, request: OAuth2Request) -> None:
        if token.family_id is not None:
            _services(self).families().revoke_by_id(token.family_id, reason="revoked_by_client")


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    """For confidential clients, each about its own tokens only."""

    CLIENT_AUTH_METHODS: ClassVar[list[str]] = CONFIDENTIAL_AUTH_METHODS

    def check_params(self, request: OAuth2Request, client: Client) -> None:
        _require_token(request)

    def query_token(self, token_string: str, token_type_hint: str | None) -> InspectedToken | None:
        return _services(self).access_tokens().inspect(token_string)

    def check_permission(self, token: InspectedToken, client: Client, request: OAuth2Request) -> bool:
        # Another client's token is reported inactive, as an unknown one is (RFC 7662 2.2).
        return token.check_client(client)

    def create_introspection_payload(self, token: InspectedToken | None) -> dict[str, Any]:
        if token is None or not token.active:
            return {"active": False}
        return {"active": True, **{name: value for name, value in token.claims.items() if value is not None}}


class InvalidLogoutRequest(InvalidRequestError):  # type: ignore[misc]
    """A logout request we refuse with an error page; ``reason`` says which part, for its words."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(description)
        self.reason = reason


class EndSession(EndSessionEndpoint):  # type: ignore[misc]
    """Validation of an end-session request; the view asks, ends the session and redirects."""

    def validate_request(self, request: OAuth2Request) -> EndSessionRequest:
        data = request.payload.data
        try:
            end_session = super().validate_request(request)
        except InvalidLogoutRequest:
            raise
        except InvalidRequestError as invalid:
            raise InvalidLogoutRequest("client", invalid.description) from None
        # Authlib ignores an unknown client and an unregistered URI; we refuse both (RP-Initiated Logout 4).
        if data.get("client_id") and end_session.client is None:
            raise InvalidLogoutRequest("client", "The client_id is not a registered client.")
        if data.get("post_logout_redirect_uri") and end_session.redirect_uri is None:
            raise InvalidLogoutRequest(
                "redirect_uri", "The post_logout_redirect_uri is not registered for this client."
            )
        return end_session

    def _validate_id_token_hint(self, id_token_hint: str) -> dict[str, Any]:
        # Authlib's takes any JWT our keys signed (an access or logout token too) and times iat by
        # the wall clock with no leeway; ours reads ID tokens only, whatever their age (RP-Initiated 2).
        try:
            return _services(self).id_tokens().read_hint(id_token_hint).claims
        except InvalidIdTokenHint as invalid:
            raise InvalidLogoutRequest("id_token_hint", str(invalid)) from None

    def is_post_logout_redirect_uri_legitimate(
        self, request: OAuth2Request, post_logout_redirect_uri: str, client: Client, logout_hint: str | None
    ) -> bool:
        # Without a hint the user is asked to confirm first; the URI is registered for this client.
        return True

    def end_session(self, end_session_request: EndSessionRequest) -> None:
        # The view ends the session itself: it has the browser's cookie.
        return None
