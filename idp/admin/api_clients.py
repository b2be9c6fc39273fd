"""Admin API clients: registered with ``admin:read`` or ``admin:write`` and perhaps some schools;
their client-credentials access tokens, checked on each request, become an ``Actor``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from joserfc.errors import JoseError
from sqlalchemy import select

from idp.admin.actor import Actor
from idp.admin.models import ClientSchool
from idp.clock import Clock
from idp.db import DbSession
from idp.keys.ring import KeyRing
from idp.oauth.access import ACCESS_TOKEN_TYPE, MAX_TOKEN_LENGTH, AccessTokenRejected
from idp.oauth.clients import ClientService, ClientSpec, InvalidClientSettings, RegisteredClient
from idp.oauth.scopes import admin_api_audience
from idp.students.models import School


class UnknownSchool(InvalidClientSettings):
    """A ``--school`` code names no school."""

    def __init__(self, code: str) -> None:
        super().__init__(f"no school with code {code!r}")
        self.code = code


class AdminClients:
    def __init__(
        self, session: DbSession, *, clients: ClientService, keys: KeyRing, issuer: str, clock: Clock
    ) -> None:
        self.session = session
        self.clients = clients
        self.keys = keys
        self.issuer = issuer
        self.clock = clock

    def register(self, spec: ClientSpec, school_codes: Sequence[str] = ()) -> RegisteredClient:
        """Register the admin API client ``spec``, limited to ``school_codes`` when there are any."""
        if spec.admin_scope is None:
            raise InvalidClientSettings("an admin API client needs --admin-scope")
        schools: list[School] = []
        for code in dict.fromkeys(school_codes):
            school = self.session.execute(select(School).where(School.code == code)).scalar_one_or_none()
            if school is None:
                raise UnknownSchool(code)
            schools.append(school)
        registered = self.clients.create(spec)
        for school in schools:
            self.session.add(ClientSchool(client_id=registered.client.client_id, school_id=school.id))
        self.session.flush()
        return registered

    def school_codes(self, client_id: str) -> list[str]:
        """Return the codes of the schools a client is limited to (none: the whole district)."""
        rows = self.session.execute(
            select(School.code)
            .join(ClientSchool, ClientSchool.school_id == School.id)
            .where(ClientSchool.client_id == client_id)
            .order_by(School.code)
        )
        return list(rows.scalars())

    def actor(self, authorization_header: str) -> Actor:
        """Return who a request's ``Authorization: Bearer`` admin access token acts as, or raise
        ``AccessTokenRejected``."""
        scheme, _, value = authorization_header.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise AccessTokenRejected("A bearer access token is required.", error="invalid_request")
        claims = self._verified_claims(value)
        client_id, scope = claims.get("client_id"), claims.get("scope")
        if not isinstance(client_id, str) or not isinstance(scope, str) or claims.get("sub") != client_id:
            raise AccessTokenRejected("The access token is not an admin API token.")
        # Checked on every request: a deleted client, or one whose scope was lowered, loses access at once.
        client = self.clients.find(client_id)
        if client is None or not client.allows_admin_scope(scope):
            raise AccessTokenRejected("The client behind this access token no longer has this scope.")
        school_ids = self.session.execute(
            select(ClientSchool.school_id).where(ClientSchool.client_id == client_id)
        ).scalars()
        return Actor.client(client_id, scope, frozenset(school_ids))

    def _verified_claims(self, value: str) -> dict[str, Any]:
        if len(value) > MAX_TOKEN_LENGTH:
            raise AccessTokenRejected("The access token is malformed.")
        try:
            # Our published keys only, explicit algorithms, revoked keys refused (KeyRing.verify).
            token = self.keys.verify(value)
        except (JoseError, ValueError):
            raise AccessTokenRejected(
                "The access token is malformed or its signature is not valid."
            ) from None
        claims = dict(token.claims)
        if token.header.get("typ") != ACCESS_TOKEN_TYPE:
            raise AccessTokenRejected("The token is not an access token.")
        if claims.get("iss") != self.issuer:
            raise AccessTokenRejected("The access token was issued by another provider.")
        # RFC 9068 4: the resource server checks that it is the audience; a /userinfo token is not ours.
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if admin_api_audience(self.issuer) not in audiences:
            raise AccessTokenRejected("The access token is not for the admin API.")
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= int(self.clock.now().timestamp()):
            raise AccessTokenRejected("The access token has expired.")
        return claims
