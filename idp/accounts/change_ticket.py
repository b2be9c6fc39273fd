"""The browser's ticket to "Change Your Password": a signed cookie between a sign-in and its forced change.

A right password that is temporary or expired does not open a session. The browser gets this
ticket instead: the account id, a digest of the password hash it was issued for (so it dies with
the change, STYLE 9), the reason, and the authorization request to continue, signed for this
purpose alone and good for a quarter of an hour.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app, redirect, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response

from idp.accounts.models import Account
from idp.accounts.password_policy import ChangeReason
from idp.accounts.service import PasswordChangeRequired
from idp.extensions import db
from idp.runtime import runtime

SALT = "idp.password-change"
LIFE = timedelta(minutes=15)


@dataclass(frozen=True)
class ChangeTicket:
    account: Account
    reason: ChangeReason
    request_id: str | None


def cookie_name() -> str:
    return "__Host-idp_password_change" if runtime().settings.uses_https else "idp_password_change"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def _digest(account: Account) -> str:
    return hashlib.sha256(account.password_hash.encode()).hexdigest()[:32]


def start_required_change(required: PasswordChangeRequired, request_id: str | None) -> Response:
    """Send the browser to "Change Your Password" with its ticket."""
    value = _serializer().dumps(
        [required.account.id, _digest(required.account), required.reason.value, request_id or ""]
    )
    response = redirect(url_for("password_change.change_password"), code=303)
    response.set_cookie(
        cookie_name(),
        value,
        max_age=int(LIFE.total_seconds()),
        httponly=True,
        secure=runtime().settings.uses_https,
        samesite="Lax",
        path="/",
    )
    return response


def read_ticket() -> ChangeTicket | None:
    """Return the browser's ticket if it is genuine, fresh, and its password still the account's."""
    value = request.cookies.get(cookie_name(), "")
    if not value or len(value) > 1000:
        return None
    try:
        account_id, digest, reason, request_id = _serializer().loads(value, max_age=int(LIFE.total_seconds()))
        account = db.session.get(Account, str(account_id))
        chosen_reason = ChangeReason(reason)
    except (BadSignature, ValueError, TypeError):
        return None
    if account is None or not hmac.compare_digest(str(digest), _digest(account)):
        return None
    return ChangeTicket(account, chosen_reason, str(request_id) or None)


def clear_ticket(response: Response) -> None:
    response.delete_cookie(cookie_name(), path="/", secure=runtime().settings.uses_https, samesite="Lax")
