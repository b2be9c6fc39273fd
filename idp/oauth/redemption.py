"""The authorization code a token request redeems, read with everything the tokens need in one statement.

The token endpoint's hot path (bench/token_exchange.py): the client, the code it presents, the
code's account (its claim-bearing columns) and the account's linked students come in one Core
``SELECT`` (outer joins: one row per student, or one row without), with no ORM entity loaded.
Client authentication, ``redirect_uri`` and PKCE are checked on what it read (Authlib, before
anything is written); the code is consumed later, atomically, by ``TokenFamilyService.redeem_code``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, FromClause, Select, Table, and_, bindparam, select

from idp.accounts.models import Account
from idp.db import DbSession
from idp.oauth.claims import AccountClaims
from idp.oauth.models import CLIENT_RECORD_FIELDS, AuthorizationCode, Client, ClientRecord
from idp.students.guardianship import (
    LINKED_STUDENT_COLUMNS,
    LINKED_STUDENT_ORDER,
    LINKED_STUDENTS,
    LinkedStudent,
    active_links_of,
    linked_student_from,
)

_CODES = cast(Table, AuthorizationCode.__table__)
_ACCOUNTS = cast(Table, Account.__table__)
_CLIENTS = cast(Table, Client.__table__)

_CODE_COLUMNS = (
    *("id", "client_id", "account_id", "redirect_uri", "scope", "nonce", "auth_time"),
    *("code_challenge", "code_challenge_method", "sid", "used_at"),
)
_ACCOUNT_COLUMNS = (
    *("type", "status", "username", "email", "email_verified_at", "first_name", "last_name"),
    *("locale", "last_login_at", "primary_student_id"),
)


def _code_and_account_columns() -> list[ColumnElement[Any]]:
    return [
        *(_CODES.c[name].label(f"code_{name}") for name in _CODE_COLUMNS),
        *(_ACCOUNTS.c[name].label(f"account_{name}") for name in _ACCOUNT_COLUMNS),
        *LINKED_STUDENT_COLUMNS,
    ]


def _code_of(client_id: ColumnElement[Any]) -> ColumnElement[bool]:
    """The unexpired code with the requested hash, issued to ``client_id`` (used or not)."""
    return and_(
        _CODES.c.code_hash == bindparam("code_hash"),
        _CODES.c.client_id == client_id,
        _CODES.c.expires_at > bindparam("now"),
    )


# The code, its account and its account's students.
_CODE_WITH_ACCOUNT: FromClause = _CODES.join(_ACCOUNTS, _ACCOUNTS.c.id == _CODES.c.account_id).outerjoin(
    LINKED_STUDENTS, active_links_of(_ACCOUNTS.c.id)
)

_REDEEMABLE_CODE: Select[Any] = (
    select(*_code_and_account_columns())
    .select_from(_CODE_WITH_ACCOUNT)
    .where(_code_of(bindparam("client_id")))
    .order_by(*LINKED_STUDENT_ORDER)
)

# The client, with the code (when it is one of this client's) and the rest as above.
_CLIENT_WITH_CODE: Select[Any] = (
    select(
        *(_CLIENTS.c[name].label(f"client_{name}") for name in CLIENT_RECORD_FIELDS),
        *_code_and_account_columns(),
    )
    .select_from(_CLIENTS.outerjoin(_CODE_WITH_ACCOUNT, _code_of(_CLIENTS.c.client_id)))
    .where(_CLIENTS.c.client_id == bindparam("client_id"))
    .order_by(*LINKED_STUDENT_ORDER)
)


@dataclass(frozen=True)
class RedeemableCode:
    """An unexpired code of one client, as Authlib's AuthorizationCodeMixin sees it."""

    id: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    auth_time: datetime
    code_challenge: str | None
    code_challenge_method: str | None
    sid: str | None
    used_at: datetime | None
    account: AccountClaims
    students: tuple[LinkedStudent, ...]

    # --- Authlib AuthorizationCodeMixin ---------------------------------------------------
    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return int(self.auth_time.timestamp())

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> list[str]:
        return ["pwd"]


def find_redeemable_code(
    session: DbSession, *, code_hash: str, client_id: str, now: datetime
) -> RedeemableCode | None:
    """Return the unexpired code with ``code_hash`` issued to ``client_id``, used or not."""
    rows = session.execute(
        _REDEEMABLE_CODE, {"code_hash": code_hash, "client_id": client_id, "now": now}
    ).all()
    return _redeemable_code(rows)


def find_client_with_code(
    session: DbSession, *, client_id: str, code_hash: str, now: datetime
) -> tuple[ClientRecord | None, RedeemableCode | None]:
    """Return the client ``client_id`` and, if it is one of this client's, the code ``code_hash``."""
    rows = session.execute(
        _CLIENT_WITH_CODE, {"code_hash": code_hash, "client_id": client_id, "now": now}
    ).all()
    if not rows:
        return None, None
    first: Any = rows[0]
    client = ClientRecord(**{name: getattr(first, f"client_{name}") for name in CLIENT_RECORD_FIELDS})
    return client, _redeemable_code(rows)


def _redeemable_code(rows: Sequence[Any]) -> RedeemableCode | None:
    if not rows or rows[0].code_id is None:
        return None
    first = rows[0]
    account = AccountClaims(
        id=first.code_account_id,
        **{name: getattr(first, f"account_{name}") for name in _ACCOUNT_COLUMNS},
    )
    return RedeemableCode(
        **{name: getattr(first, f"code_{name}") for name in _CODE_COLUMNS if name != "account_id"},
        account=account,
        students=tuple(student for row in rows if (student := linked_student_from(row)) is not None),
    )
