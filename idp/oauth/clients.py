"""Registering relying parties: exact redirect URIs, hashed secrets, PKCE unless exempted."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from idp.audit import audit
from idp.db import DbSession
from idp.oauth.models import Client
from idp.oauth.scopes import ADMIN_SCOPES, DEFAULT_CLIENT_SCOPE, SUPPORTED_SCOPES, scope_list
from idp.tokens import new_secret, secret_hash

ID_TOKEN_ALGORITHMS = ("RS256", "ES256")


class InvalidClientSettings(ValueError):
    pass


class UnknownClient(LookupError):
    pass


@dataclass(frozen=True)
class ClientSpec:
    name: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    backchannel_logout_uri: str | None = None
    public: bool = False
    first_party: bool = False
    scope: str = DEFAULT_CLIENT_SCOPE
    id_token_alg: str = "RS256"  # noqa: S105
    allow_no_pkce: bool = False
    client_id: str | None = None
    # ``admin:read`` or ``admin:write``: an admin API client (client credentials, no redirect URIs).
    admin_scope: str | None = None


@dataclass(frozen=True)
class PortalHome:
    """Where "Back to <name>" leads: a portal's name and a URI it registered."""

    name: str
    url: str


@dataclass(frozen=True)
class RegisteredClient:
    client: Client
    client_secret: str | None


class ClientService:
    def __init__(self, session: DbSession) -> None:
        self.session = session

    def create(self, spec: ClientSpec) -> RegisteredClient:
        self._validate(spec)
        # Hex, so that an id never starts with "-" and reads as an option on a command line.
        client_id = spec.client_id or secrets.token_hex(12)
        if self.find(client_id) is not None:
            raise InvalidClientSettings(f"a client with id {client_id!r} already exists")
        secret = None if spec.public else new_secret("cs")
        client = Client(
            client_id=client_id,
            secret_hash=secret_hash(secret) if secret else None,
            name=spec.name.strip(),
            redirect_uris=list(spec.redirect_uris),
            post_logout_redirect_uris=list(spec.post_logout_redirect_uris),
            backchannel_logout_uri=spec.backchannel_logout_uri,
            scope=spec.admin_scope or " ".join(scope_list(spec.scope)),
            is_public=spec.public,
            is_first_party=spec.first_party,
            # Public clients always need PKCE: without a secret it is their only proof.
            require_pkce=spec.public or not spec.allow_no_pkce,
            id_token_signed_response_alg=spec.id_token_alg,
            admin_scope=spec.admin_scope,
        )
        self.session.add(client)
        self.session.flush()
        details: dict[str, Any] = {"admin_scope": spec.admin_scope} if spec.admin_scope else {}
        audit(self.session, "client.created", client_id=client_id, name=client.name, **details)
        return RegisteredClient(client, secret)

    def update(self, client: Client, spec: ClientSpec) -> RegisteredClient:
        """Apply ``spec`` to an existing client and give it a fresh secret."""
        self._validate(spec)
        secret = None if spec.public else new_secret("cs")
        client.name = spec.name.strip()
        client.redirect_uris = list(spec.redirect_uris)
        client.post_logout_redirect_uris = list(spec.post_logout_redirect_uris)
        client.backchannel_logout_uri = spec.backchannel_logout_uri
        client.scope = spec.admin_scope or " ".join(scope_list(spec.scope))
        client.admin_scope = spec.admin_scope
        client.is_public = spec.public
        client.is_first_party = spec.first_party
        client.require_pkce = spec.public or not spec.allow_no_pkce
        client.id_token_signed_response_alg = spec.id_token_alg
        client.secret_hash = secret_hash(secret) if secret else None
        audit(self.session, "client.secret_rotated", client_id=client.client_id)
        return RegisteredClient(client, secret)

    def find(self, client_id: str) -> Client | None:
        return self.session.execute(select(Client).where(Client.client_id == client_id)).scalar_one_or_none()

    def home_of(self, client_id: str) -> PortalHome | None:
        """Return the page a parent goes back to at ``client_id``'s portal, if it has one.

        Only registered URIs, never one from the request: the first post-logout redirect URI
        (the portal's start page), else the origin of the first redirect URI.
        """
        client = self.find(client_id[:64]) if client_id else None
        if client is None or client.admin_scope is not None:
            return None
        if client.post_logout_redirect_uris:
            return PortalHome(client.name, client.post_logout_redirect_uris[0])
        if client.redirect_uris:
            parts = urlsplit(client.redirect_uris[0])
            return PortalHome(client.name, f"{parts.scheme}://{parts.netloc}/")
        return None

    def all(self) -> list[Client]:
        return list(self.session.execute(select(Client).order_by(Client.created_at)).scalars())

    def delete(self, client_id: str) -> None:
        client = self.find(client_id)
        if client is None:
            raise UnknownClient(client_id)
        self.session.delete(client)
        audit(self.session, "client.deleted", client_id=client_id)

    @staticmethod
    def _validate(spec: ClientSpec) -> None:
        if not spec.name.strip():
            raise InvalidClientSettings("a client needs a name")
        if spec.admin_scope is not None:
            _validate_admin_client(spec)
            return
        if not spec.redirect_uris:
            raise InvalidClientSettings("a client needs at least one --redirect-uri")
        for uri in [*spec.redirect_uris, *spec.post_logout_redirect_uris]:
            _check_uri(uri)
        if spec.backchannel_logout_uri:
            _check_uri(spec.backchannel_logout_uri)
        unknown = [s for s in scope_list(spec.scope) if s not in SUPPORTED_SCOPES]
        if unknown:
            raise InvalidClientSettings(f"unknown scope {unknown[0]!r}; use {' '.join(SUPPORTED_SCOPES)}")
        if "openid" not in scope_list(spec.scope):
            raise InvalidClientSettings("the scope must include openid")
        if spec.id_token_alg not in ID_TOKEN_ALGORITHMS:
            raise InvalidClientSettings(f"--id-token-alg must be one of {', '.join(ID_TOKEN_ALGORITHMS)}")
        if spec.public and spec.allow_no_pkce:
            raise InvalidClientSettings("public clients always need PKCE; drop --allow-no-pkce")


def _validate_admin_client(spec: ClientSpec) -> None:
    if spec.admin_scope not in ADMIN_SCOPES:
        raise InvalidClientSettings(f"--admin-scope must be one of {', '.join(ADMIN_SCOPES)}")
    # It uses the client credentials grant alone: a secret is its only proof, and no browser comes back.
    if spec.public:
        raise InvalidClientSettings("an admin API client is confidential; drop --public")
    if spec.redirect_uris or spec.post_logout_redirect_uris or spec.backchannel_logout_uri:
        raise InvalidClientSettings("an admin API client has no redirect or logout URIs")
    if spec.first_party or spec.allow_no_pkce:
        raise InvalidClientSettings(
            "--first-party and --allow-no-pkce are for portals, not admin API clients"
        )


def _check_uri(uri: str) -> None:
    parts = urlsplit(uri)
    # A bare "#" is an empty fragment, which urlsplit does not report (RFC 6749 3.1.2: no fragment).
    if "#" in uri or not parts.scheme or (parts.scheme in ("http", "https") and not parts.netloc):
        raise InvalidClientSettings(f"{uri!r} is not an absolute URI without a fragment")
    if parts.scheme in ("javascript", "data", "file", "vbscript"):
        raise InvalidClientSettings(f"{uri!r} uses a scheme that cannot be a redirect target")
