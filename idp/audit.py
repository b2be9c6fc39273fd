"""Audit events, named ``noun.past_verb``: stored in the database and logged."""

from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, DbSession, id_pk, utc_now, utcnow
from idp.logs import get_logger

log = get_logger("idp.audit")
# The events of the request being answered, for its log line and metrics (idp.web.access_log);
# None outside a request.
request_events: ContextVar[list[AuditEvent] | None] = ContextVar("idp_audit_request_events", default=None)


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
    # The log carries what the row does (details never hold a secret: tests/functional/
    # test_audit_and_secrets.py), nested so that no detail can overwrite a key of the line.
    log.info(
        event_name,
        audit=True,
        account_id=account_id,
        client_id=client_id,
        ip_address=ip_address,
        details=details,
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
    collected = request_events.get()
    if collected is not None:
        collected.append(event)
    return event
