"""Authorization requests waiting for a sign-in or a consent, kept as rows so any worker resumes them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from idp.clock import Clock
from idp.db import DbSession
from idp.oauth.models import AuthorizationRequest, Client
from idp.policy import TokenPolicy

_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
# The sign-in form's username field takes this many characters.
MAX_LOGIN_HINT_LENGTH = 256


@dataclass(frozen=True)
class PendingRequest:
    id: str
    params: dict[str, Any]
    client_name: str
    created_at: datetime

    @property
    def client_id(self) -> str:
        return str(self.params["client_id"])

    @property
    def login_hint(self) -> str | None:
        """The username the portal suggests (OIDC Core 3.1.2.1), to prefill the sign-in form."""
        hint = self.params.get("login_hint")
        return hint if isinstance(hint, str) and 0 < len(hint) <= MAX_LOGIN_HINT_LENGTH else None

    @property
    def ui_locales(self) -> str | None:
        value = self.params.get("ui_locales")
        return value if isinstance(value, str) else None


class PendingRequests:
    def __init__(self, session: DbSession, *, clock: Clock, policy: TokenPolicy) -> None:
        self.session = session
        self.clock = clock
        self.policy = policy

    def save(self, params: dict[str, Any], client_id: str) -> str:
        """Keep ``params`` until the user has signed in or consented; return the request's id."""
        now = self.clock.now()
        row = AuthorizationRequest(
            client_id=client_id,
            params=params,
            created_at=now,
            expires_at=now + self.policy.authorization_request_life,
        )
        self.session.add(row)
        self.session.flush()
        return row.id

    def find(self, request_id: str | None) -> PendingRequest | None:
        if not request_id or not _REQUEST_ID.match(request_id):
            return None
        found = self.session.execute(
            select(AuthorizationRequest, Client.name)
            .join(Client, Client.client_id == AuthorizationRequest.client_id)
            .where(AuthorizationRequest.id == request_id, AuthorizationRequest.expires_at > self.clock.now())
        ).first()
        if found is None:
            return None
        row, client_name = found
        return PendingRequest(row.id, dict(row.params), client_name, row.created_at)

    def finish(self, request_id: str) -> None:
        self.session.execute(delete(AuthorizationRequest).where(AuthorizationRequest.id == request_id))
