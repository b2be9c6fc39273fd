"""Authorization codes: issued at /authorize, redeemed once at /token.

Codes are ``ac_``-prefixed on the wire and kept only as SHA-256. A code is consumed by one
statement, ``UPDATE … SET used_at WHERE used_at IS NULL RETURNING``: of two concurrent
redemptions exactly one gets the row. The used row stays until it expires, so that a replay is
recognised (and revokes what the first redemption issued, ``TokenFamilyService.refuse_replay``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select, update

from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession
from idp.oauth.models import AuthorizationCode, Client
from idp.oauth.scopes import scope_list
from idp.policy import TokenPolicy
from idp.tokens import new_secret, secret_hash

# new_secret makes 46 characters; anything much longer is not one of ours.
MAX_CODE_LENGTH = 200


@dataclass(frozen=True)
class SignedInUser:
    """The user granting an authorization request: when they authenticated, in which session,
    and whether offline access may be granted (consented, or a first-party client)."""

    account_id: str
    auth_time: datetime
    session_id: str | None = None
    sid: str | None = None
    offline_access: bool = False
    # The staff member emulating the account in that session (RFC 8693 ``act``), if one is.
    acting_staff_id: str | None = None


class AuthorizationCodes:
    def __init__(self, session: DbSession, *, clock: Clock, policy: TokenPolicy) -> None:
        self.session = session
        self.clock = clock
        self.policy = policy

    @staticmethod
    def new_code() -> str:
        return new_secret("ac")

    def save(
        self,
        code: str,
        *,
        client: Client,
        user: SignedInUser,
        redirect_uri: str,
        scope: str,
        nonce: str | None,
        code_challenge: str | None,
    ) -> None:
        now = self.clock.now()
        granted = scope_list(scope)
        if not user.offline_access:
            # DESIGN "Claims": offline_access is dropped silently where it cannot be granted.
            granted = [s for s in granted if s != "offline_access"]
        self.session.add(
            AuthorizationCode(
                code_hash=secret_hash(code),
                client_id=client.client_id,
                account_id=user.account_id,
                redirect_uri=redirect_uri,
                scope=" ".join(granted),
                nonce=nonce,
                auth_time=user.auth_time,
                code_challenge=code_challenge,
                code_challenge_method="S256" if code_challenge else None,
                created_at=now,
                expires_at=now + self.policy.code_life,
                sid=user.sid,
                acting_staff_id=user.acting_staff_id,
            )
        )
        audit(
            self.session, "authorization_code.issued", account_id=user.account_id, client_id=client.client_id
        )

    def find(self, code: str, client_id: str) -> AuthorizationCode | None:
        """Return the unexpired code ``code`` issued to ``client_id``, used or not, with its account."""
        if not code or len(code) > MAX_CODE_LENGTH:
            return None
        return self.session.execute(
            select(AuthorizationCode).where(
                AuthorizationCode.code_hash == secret_hash(code),
                AuthorizationCode.client_id == client_id,
                AuthorizationCode.expires_at > self.clock.now(),
            )
        ).scalar_one_or_none()

    def consume(self, code: AuthorizationCode) -> bool:
        """Mark ``code`` used; return False if another redemption did first."""
        consumed = self.session.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.id == code.id, AuthorizationCode.used_at.is_(None))
            .values(used_at=self.clock.now())
            .returning(AuthorizationCode.id)
            .execution_options(synchronize_session=False)
        ).first()
        return consumed is not None

    def nonce_used(self, client_id: str, nonce: str) -> bool:
        """Whether ``client_id`` already has a code with ``nonce`` (OIDC Core 3.1.2.1: replay)."""
        return bool(
            self.session.execute(
                select(
                    exists().where(AuthorizationCode.client_id == client_id, AuthorizationCode.nonce == nonce)
                )
            ).scalar()
        )
