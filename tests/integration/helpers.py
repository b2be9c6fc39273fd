"""Helpers for service tests on the real databases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from idp.audit import AuditEvent
from idp.extensions import db


def count(model: Any) -> int:
    return int(db.session.execute(select(func.count()).select_from(model)).scalar_one())


def audit_names() -> list[str]:
    return list(db.session.execute(select(AuditEvent.name).order_by(AuditEvent.occurred_at)).scalars())
