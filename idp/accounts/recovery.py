"""Forgot password, forgot username: requests, the worker's answer, and the reset itself.

The trouble page only records what was typed (``RecoveryRequest``): one insert whoever asks, so
neither the page nor its timing says whether an account matched. The worker decides whether
there is anyone to write to, makes the recovery token and queues the mail. A token is kept only as
its SHA-256, works once, for ``RecoveryPolicy.token_life`` from the request, and dies with any
later password change (STYLE 9).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select, update

from idp.accounts.lockout import Lockout
from idp.accounts.models import Account, AccountStatus
from idp.accounts.password_policy import PasswordPolicyService, PasswordRules, Violation
from idp.accounts.passwords import MAX_PASSWORD_LENGTH
from idp.accounts.recovery_models import RecoveryPurpose, RecoveryRequest, RecoveryToken
from idp.accounts.service import AccountService
from idp.accounts.sessions import EndedSession, SessionService
from idp.accounts.usernames import MAX_USERNAME_LENGTH, username_key
from idp.audit import audit
from idp.clock import Clock
from idp.counters.store import whole_minutes
from idp.db import DbSession
from idp.mail.notifications import Notifier
from idp.mail.outbox import Outbox
from idp.policy import RecoveryPolicy
from idp.tokens import new_secret, secret_hash

log = logging.getLogger(__name__)

TOKEN_PREFIX = "rc"  # noqa: S105 (the prefix of recovery tokens on the wire, STYLE 7)
# ``new_secret`` makes 3 + 43 characters; anything much longer is not one of ours.
MAX_TOKEN_LENGTH = 64
MAIL_WINDOW = timedelta(hours=1)

# token -> the absolute URL of its Recover Password page (the worker has no request to build one from).
ResetLink = Callable[[str], str]
# (account id, reason) -> revoke every refresh-token family of the account (TokenFamilyService).
RevokeGrants = Callable[[str, str], object]


class InvalidRecoveryLink(Exception):
    """Tampered, truncated, foreign, already used, or overtaken by a password change."""


class RecoveryLinkExpired(Exception):
    pass


class UsernameMismatch(Exception):
    """The username typed on the Recover Password page is not the link's account."""


class ResetRefused(Exception):
    """The new password breaks a rule; ``violations`` says which, all at once."""

    def __init__(self, rules: PasswordRules, violations: list[Violation]) -> None:
        super().__init__("new password refused")
        self.rules = rules
        self.violations = violations


@dataclass(frozen=True)
class PasswordReset:
    """A completed reset: the account, the sessions it ended, and the sign-in to continue."""

    account: Account
    ended_sessions: list[EndedSession]
    authorization_request_id: str | None


def _clean(value: str, limit: int) -> str:
    # PostgreSQL refuses NUL in text; such input matches no account anyway, so it is only stored safely.
    return value.strip().replace("\x00", "\ufffd")[:limit]


def _same_address(typed: str, stored: str) -> bool:
    return hmac.compare_digest(typed.strip().casefold().encode(), stored.strip().casefold().encode())


class RecoveryService:
    def __init__(
        self,
        session: DbSession,
        *,
        clock: Clock,
        policy: RecoveryPolicy,
        accounts: AccountService,
        policies: PasswordPolicyService,
        sessions: SessionService,
        revoke_grants: RevokeGrants,
        notifier: Notifier,
        outbox: Outbox,
        link: ResetLink,
        lockout: Lockout,
    ) -> None:
        self.session = session
        self.clock = clock
        self.policy = policy
        self.accounts = accounts
        self.policies = policies
        self.sessions = sessions
        self.revoke_grants = revoke_grants
        self.notifier = notifier
        self.outbox = outbox
        self.link = link
        self.lockout = lockout

    # --- the trouble page: record, never look up ------------------------------------------
    def ask_for_password_reset(
        self,
        username: str,
        email: str,
        *,
        authorization_request_id: str | None = None,
        ip_address: str | None = None,
    ) -> None:
        """Record a Forgot Password request; the worker answers it if the two belong together."""
        self._record(
            RecoveryPurpose.PASSWORD,
            _clean(username, 256),
            email,
            authorization_request_id,
            ip_address,
        )

    def ask_for_usernames(self, email: str, *, ip_address: str | None = None) -> None:
        """Record a Forgot Username request; the worker mails the usernames on the address."""
        self._record(RecoveryPurpose.USERNAME, None, email, None, ip_address)

    def _record(
        self,
        purpose: RecoveryPurpose,
        username: str | None,
        email: str,
        authorization_request_id: str | None,
        ip_address: str | None,
    ) -> None:
        self.session.add(
            RecoveryRequest(
                purpose=purpose,
                username=username,
                email=_clean(email, 254),
                authorization_request_id=authorization_request_id,
                ip_address=ip_address,
                created_at=self.clock.now(),
            )
        )
        audit(self.session, f"{purpose.value}_recovery.requested", ip_address=ip_address)
        self.session.commit()

    # --- the worker: decide, and write ---------------------------------------------
    def answer_requests(self, limit: int = 100) -> int:
        """Answer waiting requests, committing after each; return how many mails were queued."""
        queued = 0
        for _ in range(limit):
            # SKIP LOCKED: several workers share the queue without answering a request twice.
            request = self.session.execute(
                select(RecoveryRequest)
                .order_by(RecoveryRequest.created_at, RecoveryRequest.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).scalar_one_or_none()
            if request is None:
                self.session.rollback()
                break
            request_id = request.id
            try:
                if request.purpose is RecoveryPurpose.PASSWORD:
                    queued += self._answer_password_request(request)
                else:
                    queued += self._answer_username_request(request)
                self.session.delete(request)
                self.session.commit()
            except Exception:
                # One request that cannot be answered must not hold up the rest: it is dropped
                # (the visitor may ask again) and logged.
                self.session.rollback()
                log.exception("recovery request %s could not be answered; dropped", request_id)
                self.session.execute(delete(RecoveryRequest).where(RecoveryRequest.id == request_id))
                self.session.commit()
        return queued

    def _answer_password_request(self, request: RecoveryRequest) -> int:
        account = self.accounts.find_by_username(request.username or "")
        if account is None or not _same_address(request.email, account.email):
            return 0
        if not self._may_write_to(account, "password_reset"):
            return 0
        # One live link per account: the newest mail is the one to follow, an older one is dead.
        self.session.execute(
            update(RecoveryToken)
            .where(
                RecoveryToken.account_id == account.id,
                RecoveryToken.purpose == RecoveryPurpose.PASSWORD,
                RecoveryToken.used_at.is_(None),
            )
            .values(used_at=self.clock.now())
        )
        token = new_secret(TOKEN_PREFIX)
        self.session.add(
            RecoveryToken(
                token_hash=secret_hash(token),
                account_id=account.id,
                purpose=RecoveryPurpose.PASSWORD,
                authorization_request_id=request.authorization_request_id,
                created_at=self.clock.now(),
                expires_at=request.created_at + self.policy.token_life,
            )
        )
        self.notifier.send(
            account,
            "password_reset",
            link=self.link(token),
            minutes=whole_minutes(self.policy.token_life),
        )
        audit(self.session, "recovery_token.issued", account_id=account.id)
        return 1

    def _answer_username_request(self, request: RecoveryRequest) -> int:
        address = request.email.strip().lower()
        if not address:
            return 0
        holders = [
            account
            for account in self.session.execute(
                select(Account)
                .where(func.lower(Account.email) == address)
                .order_by(Account.created_at, Account.id)
            ).scalars()
            if _same_address(request.email, account.email)
        ]
        writable = [a for a in holders if self._may_write_to(a, "username_reminder")]
        if not writable:
            return 0
        self.notifier.send(
            writable[0], "username_reminder", usernames=[account.username for account in writable]
        )
        for account in writable:
            audit(self.session, "username_reminder.sent", account_id=account.id)
        return 1

    def _may_write_to(self, account: Account, purpose: str) -> bool:
        """Test, disabled and expired accounts get no recovery mail, nor does a flooded inbox."""
        if account.is_test_account or account.status is AccountStatus.DISABLED:
            return False
        if account.has_expired(self.clock.now()):
            return False
        if self.outbox.queued_since(account.id, purpose, MAIL_WINDOW) >= self.policy.mails_per_hour:
            audit(self.session, "recovery_mail.throttled", account_id=account.id, purpose=purpose)
            return False
        return True

    # --- the Recover Password page -------------------------------------------------------
    def open(self, token: str) -> tuple[RecoveryToken, Account]:
        """Return the token's row and account if the link may still be used; else raise."""
        if not token.startswith(f"{TOKEN_PREFIX}_") or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidRecoveryLink()
        found = self.session.execute(
            select(RecoveryToken, Account)
            .join(Account, Account.id == RecoveryToken.account_id)
            .where(
                RecoveryToken.token_hash == secret_hash(token),
                RecoveryToken.purpose == RecoveryPurpose.PASSWORD,
            )
        ).first()
        if found is None:
            raise InvalidRecoveryLink()
        row, account = found
        now = self.clock.now()
        changed_since = (
            account.password_changed_at is not None and account.password_changed_at > row.created_at
        )
        if row.used_at is not None or changed_since or account.status is AccountStatus.DISABLED:
            raise InvalidRecoveryLink()
        if row.expires_at <= now or account.has_expired(now):
            raise RecoveryLinkExpired()
        return row, account

    def rules_for(self, account: Account) -> PasswordRules:
        return self.policies.rules_for_account(account)

    def reset(
        self,
        token: str,
        *,
        username: str,
        new: str,
        confirm: str,
        context_words: list[str],
    ) -> PasswordReset:
        """Set the new password, use up the token, end every session and revoke every refresh token.

        Raises ``InvalidRecoveryLink``, ``RecoveryLinkExpired``, ``UsernameMismatch`` or ``ResetRefused``.
        The caller starts the fresh session and tells the ended sessions' portals
        (``SignInService.complete``).
        """
        row, account = self.open(token)
        typed = username_key(username) if len(username) <= MAX_USERNAME_LENGTH * 4 else ""
        if not hmac.compare_digest(typed.encode(), account.username_key.encode()):
            raise UsernameMismatch()
        rules = self.policies.rules_for_account(account)
        violations = (
            rules.check(new, context=context_words)
            if len(new) <= MAX_PASSWORD_LENGTH
            else [Violation.TOO_LONG]
        )
        if new != confirm:
            violations.append(Violation.MISMATCH)
        if not violations and self.policies.reuses(account, new, rules):
            violations.append(Violation.REUSED)
        if violations:
            raise ResetRefused(rules, violations)
        now = self.clock.now()
        # Single use even against a concurrent submit of the same link: one UPDATE wins.
        used = self.session.execute(
            update(RecoveryToken)
            .where(RecoveryToken.id == row.id, RecoveryToken.used_at.is_(None))
            .values(used_at=now)
        )
        if used.rowcount != 1:  # type: ignore[attr-defined]
            raise InvalidRecoveryLink()
        self.policies.set_password(account, new)
        ended = self.sessions.end_all(account.id)
        self.revoke_grants(account.id, "password_reset")
        # The holder proved who they are through their mailbox: failed guesses no longer count.
        self.lockout.unlock_username(account.username)
        self.notifier.send(account, "password_changed", others_signed_out=True)
        audit(self.session, "password.reset", account_id=account.id, ended_sessions=len(ended))
        return PasswordReset(account, ended, row.authorization_request_id)
