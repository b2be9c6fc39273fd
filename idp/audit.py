"""Audit events, named ``noun.past_verb``: stored in the database and logged."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, ForeignKey, String, Table, insert
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, DbSession, id_pk, new_id, utc_now, utcnow

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


AUDIT_EVENT_TABLE = cast(Table, AuditEvent.__table__)
_INSERT_EVENT = insert(AUDIT_EVENT_TABLE)


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
    event = AuditEvent(
        **audit_values(
            event_name, account_id=account_id, client_id=client_id, ip_address=ip_address, at=at, **details
        )
    )
    session.add(event)
    return event


def audit_now(
    session: DbSession,
    event_name: str,
    *,
    account_id: str | None = None,
    client_id: str | None = None,
    ip_address: str | None = None,
    **details: Any,
) -> None:
    """Record ``event_name`` like ``audit``, written at once with a Core INSERT (hot paths).

    No entity and no unit of work: the event is in the caller's transaction all the same, but
    the account it names must be in the database already (not merely added to the session).
    """
    values = audit_values(
        event_name, account_id=account_id, client_id=client_id, ip_address=ip_address, **details
    )
    session.execute(_INSERT_EVENT, values)


def audit_values(
    event_name: str,
    *,
    account_id: str | None = None,
    client_id: str | None = None,
    ip_address: str | None = None,
    at: datetime | None = None,
    **details: Any,
) -> dict[str, Any]:
    """Return the ``audit_event`` row of ``event_name``, logged as ``audit`` logs it.

    For hot paths that write the row with a Core INSERT in their own statement (the token
    endpoint): the caller inserts it in the transaction of the action it records.
    """
    if log.isEnabledFor(logging.INFO):
        log.info(
            "%s %s",
            event_name,
            json.dumps({"account_id": account_id, "client_id": client_id, **details}, default=str),
        )
    return {
        "id": new_id(),
        "name": event_name,
        "occurred_at": at or utcnow(),
        "account_id": account_id,
        "client_id": client_id,
        "ip_address": ip_address,
        "details": details,
    }
