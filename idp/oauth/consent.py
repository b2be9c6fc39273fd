"""Consent: remembered per account, client and scopes; first-party clients never ask."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import HiddenField, SubmitField

from idp.accounts.models import Account
from idp.audit import audit
from idp.extensions import db
from idp.oauth.models import Consent
from idp.oauth.scopes import scope_list
from idp.runtime import runtime


class ConsentForm(FlaskForm):  # type: ignore[misc]
    request_id = HiddenField()
    allow = SubmitField(_l("Allow"))
    deny = SubmitField(_l("Deny"))


def has_consent(account: Account, client_id: str, scope: str | None) -> bool:
    """Whether the account already allowed this client every scope now asked for."""
    row = db.session.execute(
        select(Consent).where(Consent.account_id == account.id, Consent.client_id == client_id)
    ).scalar_one_or_none()
    if row is None:
        return False
    return set(scope_list(scope)) <= set(scope_list(row.scope))


def record_consent(account: Account, client_id: str, scope: str | None) -> None:
    row = db.session.execute(
        select(Consent).where(Consent.account_id == account.id, Consent.client_id == client_id)
    ).scalar_one_or_none()
    now = runtime().clock.now()
    if row is None:
        row = Consent(account_id=account.id, client_id=client_id, scope="", granted_at=now)
        db.session.add(row)
    row.scope = " ".join(scope_list(f"{row.scope} {scope or ''}"))
    row.granted_at = now
    audit(db.session, "consent.granted", account_id=account.id, client_id=client_id, scope=scope)
