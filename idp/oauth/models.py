"""Client, pending authorization request, authorization code, consent and token-family rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.accounts.models import Account
from idp.db import (
    Base,
    bool_false,
    bool_true,
    id_pk,
    sha256_hex,
    utc_now,
    utc_time,
    utc_time_or_none,
)
from idp.oauth.scopes import admin_scope_within, scope_list
from idp.tokens import secret_matches


class Client(Base):
    """A relying party; the methods are Authlib's ``ClientMixin``."""

    __tablename__ = "oauth_client"

    id: Mapped[id_pk]
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    # SHA-256 of the secret; empty for public clients, which authenticate with PKCE alone.
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(2000))
    scope: Mapped[str] = mapped_column(String(500))
    is_public: Mapped[bool_false]
    is_first_party: Mapped[bool_false]
    require_pkce: Mapped[bool_true]
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(16), default="RS256")
    # ``admin:read`` or ``admin:write``: a client of the admin API (client credentials grant only).
    admin_scope: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[utc_now]

    @property
    def allows_offline_access(self) -> bool:
        return "offline_access" in scope_list(self.scope)

    @property
    def client_metadata(self) -> dict[str, Any]:
        return {"post_logout_redirect_uris": self.post_logout_redirect_uris}

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        # OIDC Core 3.1.2.1: redirect_uri is REQUIRED; never fall back to a registered one.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        if self.admin_scope is not None:
            # Authlib asks this when it writes the token: admin:read is within admin:write.
            return scope if self.allows_admin_scope(scope) else ""
        allowed = set(scope_list(self.scope))
        return " ".join(s for s in scope_list(scope) if s in allowed)

    def allows_admin_scope(self, scope: str | None) -> bool:
        """Whether this admin API client may have an access token for ``scope``."""
        return admin_scope_within(scope, self.admin_scope)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string match (RFC 9700 2.1): no prefix, no wildcard, no normalisation.
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret_hash is not None and secret_matches(client_secret, self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.is_public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        # An admin API client acts for itself: it never sends a browser to /authorize.
        return response_type == "code" and self.admin_scope is None

    def check_grant_type(self, grant_type: str) -> bool:
        # An admin API client has the client credentials grant, and only that one; no other client has it.
        if self.admin_scope is not None:
            return grant_type == "client_credentials"
        # Refresh tokens exist only for offline access, so only a client registered with it may refresh.
        if grant_type == "refresh_token":
            return self.allows_offline_access
        return grant_type == "authorization_code"


class AuthorizationRequest(Base):
    """An /authorize request waiting for the user to sign in or consent."""

    __tablename__ = "authorization_request"

    id: Mapped[id_pk]
    client_id: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[utc_now]
    expires_at: Mapped[utc_time]


class AuthorizationCode(Base):
    """A code a client may redeem once; the methods are Authlib's ``AuthorizationCodeMixin``."""

    __tablename__ = "authorization_code"
    # Authlib's nonce-replay check asks for (client, nonce): it must not scan the client's codes.
    __table_args__ = (Index("ix_authorization_code_client_id_nonce", "client_id", "nonce"),)

    id: Mapped[id_pk]
    code_hash: Mapped[sha256_hex] = mapped_column(unique=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("oauth_client.client_id", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(500))
    nonce: Mapped[str | None] = mapped_column(String(500))
    auth_time: Mapped[utc_time]
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[utc_now]
    expires_at: Mapped[utc_time]
    # Set once, atomically, by the redemption that wins; the row stays until expiry.
    used_at: Mapped[utc_time_or_none]
    # The OP session's public id (OPSession.sid), copied into the ID token's sid claim.
    sid: Mapped[str | None] = mapped_column(String(32))
    # The staff member emulating the account, when one is: tokens carry ``act`` (RFC 8693 4.1).
    acting_staff_id: Mapped[str | None] = mapped_column(String(32))

    account: Mapped[Account] = relationship(lazy="joined", innerjoin=True)

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return int(self.auth_time.timestamp())

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> list[str]:
        return ["pwd"]


class Consent(Base):
    __tablename__ = "consent"
    __table_args__ = (UniqueConstraint("account_id", "client_id"),)

    id: Mapped[id_pk]
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("oauth_client.client_id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(500))
    granted_at: Mapped[utc_now]


class RefreshTokenFamily(Base):
    """Every token issued from one authorization code: its access tokens and, with offline access,
    its chain of rotated refresh tokens. Revoking the family ends all of them (RFC 9700 4.14.2)."""

    __tablename__ = "refresh_token_family"

    id: Mapped[id_pk]
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_client.client_id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    # No foreign key: the code row goes at its expiry, the family outlives it.
    authorization_code_id: Mapped[str | None] = mapped_column(String(32), index=True)
    sid: Mapped[str | None] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(500))
    auth_time: Mapped[utc_time]
    created_at: Mapped[utc_now]
    # Absolute end (IDP_REFRESH_TOKEN_SECONDS; the access token's own life without offline access).
    expires_at: Mapped[utc_time]
    revoked_at: Mapped[utc_time_or_none]
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    # Copied from the code: tokens refreshed from an emulation still name who acted.
    acting_staff_id: Mapped[str | None] = mapped_column(String(32))


class RefreshToken(Base):
    """One refresh token of a family; rotated (used once) or current. Only its SHA-256 is kept."""

    __tablename__ = "refresh_token"

    id: Mapped[id_pk]
    family_id: Mapped[str] = mapped_column(
        ForeignKey("refresh_token_family.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[sha256_hex] = mapped_column(unique=True)
    created_at: Mapped[utc_now]
    # Idle end: IDP_REFRESH_IDLE_SECONDS after issue, never past the family's absolute end.
    expires_at: Mapped[utc_time]
    # Set once, atomically, when the token is exchanged for the next one; presenting it again is reuse.
    rotated_at: Mapped[utc_time_or_none]

    family: Mapped[RefreshTokenFamily] = relationship()


class BackchannelRetry(Base):
    """A logout token a portal did not take (timeout, network error, 5xx or 429), to send again.

    The row names the ended session, not a token: each attempt signs a fresh one, since a portal
    refuses a logout token minutes old. It is deleted once delivered or given up.
    """

    __tablename__ = "backchannel_retry"

    id: Mapped[id_pk]
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_client.client_id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    sid: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[utc_now]
    next_attempt_at: Mapped[utc_time] = mapped_column(index=True)
    # Attempts so far, the first (at sign-out) included.
    attempts: Mapped[int]
    last_error: Mapped[str] = mapped_column(String(200))
