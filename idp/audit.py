"""Audit events, named ``noun.past_verb``: stored in the database and logged."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, DbSession, id_pk, utc_now, utcnow

log = logging.getLogger("idp.audit")


class AuditEvent(Base):
    __tablename__ = "audit_event"

    id: Mapped[id_pk]
    name: Mapped[str] = mapped_column(String(64), index=True)
    occurred_at: Mapped[utc_now]
    account_id: Mapped[str | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"), index=True)
    client_id: Mapped[str | None] = mapped_column(String(64))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# The audit trail's pages, newest first (idp.admin.audit_trail), and events of one name by time
# (the search's recent locks, the trail filtered by event).
Index("ix_audit_event_occurred_at_id", AuditEvent.occurred_at, AuditEvent.id)
Index("ix_audit_event_name_occurred_at", AuditEvent.name, AuditEvent.occurred_at)


def audit(
    session: DbSession,
    event_name: str,
    *,
    account_id: str | None = None,
    client_id: str | None = None,
    ip_address: str | None = None,
    at: datetime | None = None,
    **details: Any,
) -> AuditEvent:
    """Record ``event_name`` in the caller's transaction, so the event lands only if the action does."""
    if log.isEnabledFor(logging.INFO):
        log.info(
            "%s %s",
            event_name,
            json.dumps({"account_id": account_id, "client_id": client_id, **details}, default=str),
        )
    event = AuditEvent(
        name=event_name,
        occurred_at=at or utcnow(),
        account_id=account_id,
        client_id=client_id,
        ip_address=ip_address,
        details=details,
    )
    session.add(event)
    return event
