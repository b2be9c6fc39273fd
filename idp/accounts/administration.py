"""What district staff do to an account: disable, enable, expire, give a temporary password.

Each takes effect everywhere at once: the account's sessions end (its portals hear of it through
back-channel logout, after the commit) and its refresh tokens are revoked, so that nothing opened
before keeps working. Each is audited with who did it. No HTTP: the CLI calls this today, the
staff console will.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from idp.accounts.models import Account, AccountStatus
from idp.accounts.password_policy import PasswordPolicyService, PasswordRules, Violation
from idp.accounts.passwords import passphrase
from idp.accounts.registration import account_password_context
from idp.accounts.sessions import EndedSession, SessionService
from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession

# (account id, reason) -> revoke every refresh-token family of the account (TokenFamilyService).
RevokeGrants = Callable[[str, str], object]
# Tells the portals of ended sessions that they ended (``BackchannelLogout.tell``).
TellPortals = Callable[[Sequence[EndedSession]], None]

MAX_REASON_LENGTH = 200
# Five words and a number (about 58 bits); more words only where a policy asks for more length.
PASSPHRASE_WORDS = 5


class TemporaryPasswordRefused(ValueError):
    """A temporary password chosen by staff breaks the account's policy; ``violations`` say how."""

    def __init__(self, rules: PasswordRules, violations: list[Violation]) -> None:
        super().__init__("temporary password refused")
        self.rules = rules
        self.violations = violations


@dataclass(frozen=True)
class TemporaryPassword:
    password: str
    expires_at: datetime
    ended_sessions: int


class AccountAdministration:
    def __init__(
        self,
        session: DbSession,
        *,
        clock: Clock,
        sessions: SessionService,
        policies: PasswordPolicyService,
        revoke_grants: RevokeGrants,
        tell_portals: TellPortals,
        district_name: str,
        actor: str,
    ) -> None:
        self.session = session
        self.clock = clock
        self.sessions = sessions
        self.policies = policies
        self.revoke_grants = revoke_grants
        self.tell_portals = tell_portals
        self.district_name = district_name
        # Who acts, as the audit trail names them ("cli:alice"; the console's staff account).
        self.actor = actor

    def disable(self, account: Account, *, reason: str) -> int:
        """Disable the account and sign it out everywhere; return how many sessions ended."""
        reason = reason.strip()
        if not reason or len(reason) > MAX_REASON_LENGTH or not reason.isprintable():
            raise ValueError(f"the reason must be 1 to {MAX_REASON_LENGTH} printable characters")
        account.status = AccountStatus.DISABLED
        account.disabled_reason = reason
        return self._end_everything(account, "account.disabled", "account_disabled", reason=reason)

    def enable(self, account: Account) -> bool:
        """Let a disabled account sign in again; return whether it was disabled."""
        if account.status is not AccountStatus.DISABLED:
            return False
        # Back to where it was: confirmed if its address was verified, else still pending.
        account.status = AccountStatus.CONFIRMED if account.email_verified_at else AccountStatus.PENDING
        account.disabled_reason = None
        audit(self.session, "account.enabled", account_id=account.id, actor=self.actor)
        self.session.commit()
        return True

    def expire(self, account: Account, at: datetime | None) -> int:
        """Set when the account expires (None: never); one already past ends its sessions now.

        Return how many sessions ended.
        """
        account.expires_at = at
        if at is not None and at <= self.clock.now():
            return self._end_everything(
                account, "account.expiry_set", "account_expired", expires_at=at.isoformat()
            )
        audit(
            self.session,
            "account.expiry_set",
            account_id=account.id,
            actor=self.actor,
            expires_at=at.isoformat() if at else None,
        )
        self.session.commit()
        return 0

    def set_temporary_password(self, account: Account, chosen: str | None = None) -> TemporaryPassword:
        """Give the account a temporary password, generated unless staff chose one that passes its
        policy; it must be changed at the next sign-in and stops working after
        ``IDP_TEMPORARY_PASSWORD_SECONDS``. Whoever knew the old password is signed out everywhere.
        """
        rules = self.policies.rules_for_account(account)
        context = account_password_context(account, self.district_name)
        if chosen is None:
            password = self._generate(rules, context)
        else:
            violations = rules.check(chosen, context=context)
            if not violations and self.policies.reuses(account, chosen, rules):
                violations.append(Violation.REUSED)
            if violations:
                raise TemporaryPasswordRefused(rules, violations)
            password = chosen
        self.policies.set_temporary_password(account, password)
        ended = self._end_everything(
            account, "password.set_temporary", "temporary_password", generated=chosen is None
        )
        assert account.temporary_password_expires_at is not None
        return TemporaryPassword(password, account.temporary_password_expires_at, ended)

    def _generate(self, rules: PasswordRules, context: list[str]) -> str:
        words = PASSPHRASE_WORDS
        for _ in range(100):
            password = passphrase(words)
            violations = rules.check(password, context=context)
            if not violations:
                return password
            # Longer where the policy asks for more; any other refusal (a context word drawn) draws again.
            if Violation.TOO_SHORT in violations:
                words += 1
        raise RuntimeError("no passphrase passes this policy")

    def _end_everything(self, account: Account, event: str, revocation: str, **details: Any) -> int:
        ended = self.sessions.end_all(account.id)
        revoked = self.revoke_grants(account.id, revocation)
        audit(
            self.session,
            event,
            account_id=account.id,
            actor=self.actor,
            ended_sessions=len(ended),
            revoked_grants=revoked,
            **details,
        )
        self.session.commit()
        self.tell_portals(ended)
        return len(ended)
