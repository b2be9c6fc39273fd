"""Authorization requests waiting for a sign-in or a consent, kept as rows so any worker resumes them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from idp.extensions import db
from idp.oauth.models import AuthorizationRequest, Client
from idp.runtime import runtime

_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
# The sign-in form's username field takes this many characters.
MAX_LOGIN_HINT_LENGTH = 256


@dataclass(frozen=True)
class PendingRequest:
    id: str
    params: dict[str, Any]
    client_name: str
    created_at: Any

    @property
    def login_hint(self) -> str | None:
        """The username the portal suggests (OIDC Core 3.1.2.1), to prefill the sign-in form."""
        hint = self.params.get("login_hint")
        return hint if isinstance(hint, str) and 0 < len(hint) <= MAX_LOGIN_HINT_LENGTH else None

    @property
    def ui_locales(self) -> str | None:
        value = self.params.get("ui_locales")
        return value if isinstance(value, str) else None


def save_pending_request(params: dict[str, Any], client: Client) -> str:
    rt = runtime()
    now = rt.clock.now()
    # Expired rows of any request are cleared on the way: the table stays small without a cron.
    db.session.execute(delete(AuthorizationRequest).where(AuthorizationRequest.expires_at <= now))
    row = AuthorizationRequest(
        client_id=client.client_id,
        params=params,
        created_at=now,
        expires_at=now + rt.token_policy.authorization_request_life,
    )
    db.session.add(row)
    db.session.flush()
    return row.id


def find_pending_request(request_id: str | None) -> PendingRequest | None:
    if not request_id or not _REQUEST_ID.match(request_id):
        return None
    found = db.session.execute(
        select(AuthorizationRequest, Client.name)
        .join(Client, Client.client_id == AuthorizationRequest.client_id)
        .where(
            AuthorizationRequest.id == request_id,
            AuthorizationRequest.expires_at > runtime().clock.now(),
        )
    ).first()
    if found is None:
        return None
    row, client_name = found
    return PendingRequest(row.id, dict(row.params), client_name, row.created_at)


def finish_pending_request(request_id: str) -> None:
    db.session.execute(delete(AuthorizationRequest).where(AuthorizationRequest.id == request_id))
