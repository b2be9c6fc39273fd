"""The portal's tables: its server-side sessions, their tokens, and the logout tokens it has acted on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from relying_party_demo.db import Base


class StoredSession(Base):
    """A browser's session: the cookie holds a random id, this row its SHA-256.

    ``data`` is what Flask keeps in ``session`` (Authlib's pending state, the CSRF secret);
    the signed-in columns are set from a verified ID token. ``op_sid`` and ``account_sub``
    are what a back-channel logout token names (OIDC Back-Channel Logout 1.0 2.4).
    """

    __tablename__ = "portal_session"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    account_sub: Mapped[str | None] = mapped_column(String(255), index=True)
    op_sid: Mapped[str | None] = mapped_column(String(255), index=True)
    id_token: Mapped[str | None] = mapped_column(Text)
    claims: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    signed_in_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(index=True)


class SessionTokens(Base):
    """What a signed-in session keeps from the token endpoint to read the claims again later.

    A table of its own, written only under the session row's lock (``SessionStore.locked``):
    a request saving the session's ``data`` can then never put back a refresh token that the
    provider has rotated since, which would be taken as reuse and end the family's sign-in.
    """

    __tablename__ = "portal_session_tokens"

    session_hash: Mapped[str] = mapped_column(
        String(64), ForeignKey("portal_session.id_hash", ondelete="CASCADE"), primary_key=True
    )
    tokens: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)


class ReceivedLogoutToken(Base):
    """A logout token the portal acted on, kept until it would be refused anyway.

    A replayed token must not end a session begun after the first delivery; the ``jti`` is
    stored as its SHA-256 so that the key has a fixed length whatever the provider sends.
    """

    __tablename__ = "portal_logout_token"

    jti_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    usable_until: Mapped[datetime] = mapped_column(index=True)
