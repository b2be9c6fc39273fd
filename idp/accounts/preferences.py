"""Account Preferences: name, email, username, password and students, without HTTP."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from idp.accounts.district import DistrictOptions
from idp.accounts.lockout import LockedOut
from idp.accounts.models import Account, OPSession
from idp.accounts.password_policy import PasswordPolicyService, PasswordRules, Violation
from idp.accounts.registration import (
    Problem,
    Problems,
    RegistrationService,
    RowProblem,
    StudentEntry,
    account_password_context,
    check_email,
    check_name,
    check_username,
)
from idp.accounts.service import AccountService, InvalidCredentials, SignInContext
from idp.accounts.sessions import EndedSession, SessionService
from idp.accounts.skeleton import confusable_skeleton
from idp.accounts.usernames import username_key
from idp.accounts.verification import EmailVerification
from idp.audit import audit
from idp.db import DbSession
from idp.mail.notifications import Notifier
from idp.students.guardianship import AccessSpent, GuardianshipService
from idp.students.models import GuardianLink, Student

# (account id, reason, sid to keep) -> revoke the account's refresh-token families (TokenFamilyService).
RevokeGrants = Callable[[str, str, str | None], object]
# Tells the portals of ended sessions that they ended (``BackchannelLogout.tell``).
TellPortals = Callable[[Sequence[EndedSession]], None]


class ChangeNotAllowed(Exception):
    """The district does not let account holders change this themselves."""


class ChangeRefused(Exception):
    """The new value breaks a rule; ``problems`` says which, all at once."""

    def __init__(self, problems: Problems) -> None:
        super().__init__("change refused")
        self.problems = problems


class PreferencesService:
    def __init__(
        self,
        session: DbSession,
        *,
        accounts: AccountService,
        policies: PasswordPolicyService,
        registration: RegistrationService,
        guardianship: GuardianshipService,
        verification: EmailVerification,
        notifier: Notifier,
        options: DistrictOptions,
        sessions: SessionService,
        revoke_grants: RevokeGrants,
        tell_portals: TellPortals,
    ) -> None:
        self.session = session
        self.accounts = accounts
        self.policies = policies
        self.registration = registration
        self.guardianship = guardianship
        self.verification = verification
        self.notifier = notifier
        self.options = options
        self.sessions = sessions
        self.revoke_grants = revoke_grants
        self.tell_portals = tell_portals

    def rules_for(self, account: Account) -> PasswordRules:
        return self.policies.rules_for_account(account)

    def change_name(self, account: Account, first_name: str, last_name: str) -> None:
        problems = Problems()
        first = check_name(problems, "first_name", first_name)
        last = check_name(problems, "last_name", last_name)
        if problems:
            raise ChangeRefused(problems)
        account.first_name, account.last_name = first, last
        audit(self.session, "profile.changed", account_id=account.id, field="name")
        self.session.commit()

    def change_language(self, account: Account, language: str, offered: tuple[str, ...]) -> None:
        """Set the language of the account's mail (and of its pages, through the view's cookie)."""
        if language not in offered:
            problems = Problems()
            problems.add("language", Problem.NOT_OFFERED if language else Problem.REQUIRED)
            raise ChangeRefused(problems)
        if account.locale == language:
            return
        account.locale = language
        audit(self.session, "profile.changed", account_id=account.id, field="language")
        self.session.commit()

    def change_username(self, account: Account, username: str) -> None:
        problems = Problems()
        chosen = check_username(problems, "username", username, self.accounts, except_account_id=account.id)
        if problems:
            raise ChangeRefused(problems)
        account.username = chosen
        account.username_key = username_key(chosen)
        account.username_skeleton = confusable_skeleton(chosen)
        try:
            self.session.flush()
        except IntegrityError:
            # Another account took the username (or a look-alike) between the check and the update.
            self.session.rollback()
            problems.add("username", Problem.USERNAME_TAKEN)
            raise ChangeRefused(problems) from None
        audit(self.session, "username.changed", account_id=account.id)
        self.session.commit()

    def change_email(self, account: Account, email: str) -> bool:
        """Change the address (to be verified again), telling the old one; return whether it changed."""
        if not self.options.allow_email_change:
            raise ChangeNotAllowed()
        problems = Problems()
        new = check_email(problems, "email", email)
        if problems:
            raise ChangeRefused(problems)
        old = account.email
        if new.casefold() == old.casefold():
            return False
        self.notifier.send(account, "email_changed", to=old, old_email=old, new_email=new)
        account.email = new
        account.email_verified_at = None
        self.session.flush()
        audit(self.session, "email.changed", account_id=account.id)
        self.verification.send(account, after_change=True)
        self.session.commit()
        return True

    def change_password(
        self,
        account: Account,
        *,
        current: str,
        new: str,
        confirm: str,
        context: SignInContext,
        required: bool = False,
        sign_out_others: bool = False,
        keep: OPSession | None = None,
    ) -> int:
        """Check the current password (under the sign-in lockout) and the rules; then change it.

        ``required`` is the forced change at sign-in (temporary or expired password): the district
        cannot forbid it, and the new password must differ from the current one whatever the history.
        ``sign_out_others`` does what a reset does, but for the browser's own session ``keep``: the
        account's other sessions end (their portals are told) and the refresh tokens of every grant
        not made in ``keep`` are revoked. Return how many sessions ended.
        Raises ``ChangeNotAllowed``, ``ChangeRefused`` with every violation, or the lockout's
        ``LockedOut`` when the username is locked; a wrong current password's audit stays either way.
        """
        if not required and not self.options.allow_password_change:
            raise ChangeNotAllowed()
        rules = self.policies.rules_for_account(account)
        problems = Problems(rules=rules)
        words = account_password_context(account, self.options.name)
        violations = rules.check(new, context=words)
        if new != confirm:
            violations.append(Violation.MISMATCH)
        try:
            self.accounts.verify_password(account, current, context)
        except InvalidCredentials:
            violations.insert(0, Violation.CURRENT_WRONG)
        except LockedOut:
            self.session.commit()  # the refusal's audit event stays
            raise
        # History is looked at only once the holder has proved who they are.
        # The current password never counts as a new one, whatever the history keeps (issue 19).
        if not violations and self.policies.reuses(account, new, rules):
            violations.append(Violation.REUSED)
        if violations:
            problems.password = violations
            self.session.commit()  # a wrong current password's audit event stays
            raise ChangeRefused(problems)
        self.policies.set_password(account, new)
        ended: list[EndedSession] = []
        if sign_out_others:
            ended = self.sessions.end_all(account.id, keep=keep.id if keep else None)
            revoked = self.revoke_grants(account.id, "password_changed", keep.sid if keep else None)
            audit(
                self.session,
                "account.signed_out_elsewhere",
                account_id=account.id,
                ended_sessions=len(ended),
                revoked_grants=revoked,
            )
        self.notifier.send(account, "password_changed", others_signed_out=sign_out_others)
        self.session.commit()
        self.tell_portals(ended)
        return len(ended)

    def add_student(self, account: Account, entry: StudentEntry, *, ip_address: str | None) -> Student:
        """Link one more student by Access ID (the failed checks' audit events stay either way)."""
        problems = Problems()
        if entry.is_blank:
            problems.rows[0] = RowProblem(Problem.ROW_INCOMPLETE)
            raise ChangeRefused(problems)
        found = self.registration.check_students(problems, (entry,), ip_address=ip_address, account=account)
        if not problems and found and self._is_linked(account, found[0][0]):
            problems.rows[0] = RowProblem(Problem.ROW_ALREADY_LINKED)
        if problems or not found:
            self.session.commit()
            raise ChangeRefused(problems)
        ((student, relationship),) = found
        try:
            link = self.guardianship.link_by_access(
                account, student, relationship, allowed=self.options.relationships
            )
        except AccessSpent:
            # Another guardian spent a single-use Access Password since it was checked.
            self.session.rollback()
            problems.rows[0] = RowProblem(Problem.ROW_ACCESS)
            raise ChangeRefused(problems) from None
        self.notifier.send(
            account,
            "student_linked",
            student_name=f"{student.first_name} {student.last_name}",
            relationship=link.relationship,
        )
        self.session.commit()
        return student

    def choose_primary(self, account: Account, student_id: str) -> Student:
        student = self.guardianship.set_primary(account, student_id)
        self.session.commit()
        return student

    def resend_verification(self, account: Account) -> bool:
        """Send a new verification link; False if the address is verified already.

        Raises ``TooManyVerificationMails`` when several were sent lately.
        """
        sent = self.verification.send(account, limit=True)
        self.session.commit()
        return sent

    def _is_linked(self, account: Account, student: Student) -> bool:
        link = self.session.execute(
            select(GuardianLink.id).where(
                GuardianLink.account_id == account.id,
                GuardianLink.student_id == student.id,
                GuardianLink.status == "active",
            )
        ).first()
        return link is not None
