"""What staff see of a parent or student account, and everything they do to it (no HTTP).

``StaffAccounts`` is the one service the console's pages and the admin JSON API call. Every method
takes the ``Actor`` first and checks it before anything else:

- ``actor.require(permission)`` raises ``NotPermitted`` (a 403) when the role may not act;
- the account is found through ``actor.reaches_accounts()``, so an unknown id, a staff account and
  an account whose students are all at another school raise ``OutOfReach`` alike (a 404).

Reading (``Permission.VIEW``):
    ``account(actor, account_id) -> AccountView``: the account, its linked students, sign-in
    history, audit trail, live sessions and grants, and its status as the search shows it.

Acting (each one transaction, with its audit event naming ``actor.label``, and its mail):
    ``unlink_student(actor, account_id, sis_id)``               MANAGE_ACCOUNTS  mail: student_removed
    ``delete_account(actor, account_id, reason) -> Deleted``     MANAGE_ACCOUNTS  mail: account_deleted
    ``disable(actor, account_id, reason) -> int``                MANAGE_ACCOUNTS
    ``enable(actor, account_id) -> bool``                        MANAGE_ACCOUNTS
    ``set_expiry(actor, account_id, at | None) -> int``          MANAGE_ACCOUNTS
    ``change_type(actor, account_id, new_type, relationship)``   MANAGE_ACCOUNTS
    ``mark_test(actor, account_id, is_test) -> bool``            MANAGE_ACCOUNTS
    ``set_temporary_password(actor, account_id)``                SET_TEMPORARY_PASSWORD
    ``unlock(actor, account_id) -> bool``                        UNLOCK
    ``resend_verification(actor, account_id) -> bool``           RESEND_VERIFICATION

Outcomes, for the views to word: ``NotPermitted`` (403); ``OutOfReach`` and its kind
``StudentNotLinked`` (404); ``InvalidReason`` (delete, disable); ``NotPending`` (resend);
``UnchangeableType``, ``TooManyStudents`` and ``UnknownRelationship`` (change of type);
``ValueError`` for an expiry without a time zone.

Disable, enable, expiry and temporary passwords are ``AccountAdministration``'s (the CLI's too),
built for the actor's label. Test accounts get no mail (``Notifier``, ``EmailVerification``).

Changing the type (parent <-> student) keeps the account's links, relabelled: a student account's
links say ``Self`` (as ``GuardianshipService.link`` makes them), so a parent becoming a student may
link one student at most (``TooManyStudents`` otherwise), and a student becoming a parent gets the
relationship staff choose (``Guardian`` unless told). Portals see the new type and links at the
next refresh, since claims are read from the rows.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from idp.accounts.administration import (
    MAX_REASON_LENGTH,
    AccountAdministration,
    TellPortals,
    TemporaryPassword,
)
from idp.accounts.deletion import AccountDeletion, Deleted
from idp.accounts.district import DistrictOptions
from idp.accounts.lockout import Lockout
from idp.accounts.models import Account, AccountStatus, AccountType, OPSession, SessionClient
from idp.accounts.sessions import SessionService
from idp.accounts.verification import EmailVerification
from idp.admin.actor import Actor, OutOfReach
from idp.admin.roles import Permission
from idp.audit import AuditEvent, audit
from idp.clock import Clock
from idp.db import DbSession
from idp.mail.notifications import Notifier
from idp.oauth.models import Client, RefreshTokenFamily
from idp.policy import SessionPolicy
from idp.students.models import GuardianLink, School, Student
from idp.students.relationships import SELF, canonical_relationship
from idp.students.unlinking import GuardianUnlinking

# (account id, reason) -> revoke every refresh-token family of the account; return how many.
RevokeGrants = Callable[[str, str], int]
# How many sign-ins and audit events the account page shows, newest first.
HISTORY_LIMIT = 50
# Ids are 32 hex characters, school-system ids at most 64: longer input names nothing.
MAX_ID_LENGTH = 64


class AccountState(enum.StrEnum):
    """An account's status as the console shows and filters it (the seed's "Account Status")."""

    ACTIVE = "active"
    PENDING = "pending"
    LOCKED = "locked"
    EXPIRED = "expired"
    DISABLED = "disabled"
    # A mark beside the state rather than a state (``account_state`` never answers it): the
    # filter picks test accounts in any state.
    TEST = "test"


def account_state(account: Account, *, now: datetime, locked: bool) -> AccountState:
    """Return the one status shown for ``account``: what keeps it from signing in comes first."""
    if account.status is AccountStatus.DISABLED:
        return AccountState.DISABLED
    if account.has_expired(now):
        return AccountState.EXPIRED
    if locked:
        return AccountState.LOCKED
    if account.status is AccountStatus.PENDING:
        return AccountState.PENDING
    return AccountState.ACTIVE


def is_locked(lockout: Lockout, account: Account) -> bool:
    """Whether sign-ins by the account's username, or by its address, are locked now."""
    # The typed identifier is counted as well as the username (AccountService._lockout_subjects).
    return lockout.is_locked(lockout.user_key(account.username)) or lockout.is_locked(
        lockout.user_key(account.email)
    )


def clean_id(value: str) -> str | None:
    """Return ``value`` if it may name a row; None for what cannot (too long, NUL)."""
    if not value or len(value) > MAX_ID_LENGTH or "\x00" in value:
        return None
    return value


# --- outcomes -------------------------------------------------------------------------------
class StudentNotLinked(OutOfReach):
    """The student is not linked to this account (or not one the actor reaches): a 404."""


class NotPending(ValueError):
    """Verification mail is resent to pending accounts only (the seed)."""


class InvalidReason(ValueError):
    """A reason must be 1 to ``MAX_REASON_LENGTH`` printable characters."""


class UnchangeableType(ValueError):
    """Only parent and student accounts change type, into each other."""


class TooManyStudents(ValueError):
    """A student account links its own record only; this account links ``count`` students."""

    def __init__(self, count: int) -> None:
        super().__init__(f"a student account links one student; this one links {count}")
        self.count = count


# --- what the account page shows --------------------------------------------------------------
@dataclass(frozen=True)
class LinkedStudentView:
    sis_id: str
    first_name: str
    last_name: str
    grade: str | None
    school_code: str
    school_name: str
    relationship: str
    is_primary: bool


@dataclass(frozen=True)
class SignInRecord:
    at: datetime
    # "succeeded", "failed", "refused" or "password_change_required" (the ``signin.*`` event).
    outcome: str
    # Why a refusal or failure ("locked", "disabled", "credentials" …), else None.
    reason: str | None
    ip_address: str | None
    client_id: str | None
    user_agent: str | None


@dataclass(frozen=True)
class AuditRecord:
    at: datetime
    name: str
    actor: str | None
    client_id: str | None
    ip_address: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class LiveSession:
    id: str
    created_at: datetime
    last_seen_at: datetime
    ip_address: str | None
    user_agent: str | None
    client_ids: tuple[str, ...]
    # The staff account holding this session as the account (emulation), if any.
    emulated_by: str | None


@dataclass(frozen=True)
class GrantView:
    family_id: str
    client_id: str
    client_name: str
    scope: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class AccountView:
    id: str
    type: AccountType
    username: str
    email: str
    first_name: str
    last_name: str
    state: AccountState
    email_verified_at: datetime | None
    created_at: datetime
    expires_at: datetime | None
    disabled_reason: str | None
    is_test_account: bool
    must_change_password: bool
    login_count: int
    # "Last login date" as the seed shows it: the current sign-in's time (PWA.CDT) and IP.
    last_login_at: datetime | None
    last_login_ip: str | None
    students: list[LinkedStudentView]
    signins: list[SignInRecord]
    events: list[AuditRecord]
    sessions: list[LiveSession]
    grants: list[GrantView]


class StaffAccounts:
    def __init__(
        self,
        session: DbSession,
        *,
        clock: Clock,
        lockout: Lockout,
        session_policy: SessionPolicy,
        administration: Callable[[str], AccountAdministration],
        verification: EmailVerification,
        notifier: Notifier,
        sessions: SessionService,
        revoke_grants: RevokeGrants,
        tell_portals: TellPortals,
        options: DistrictOptions,
        deletion: AccountDeletion,
    ) -> None:
        self.session = session
        self.clock = clock
        self.lockout = lockout
        self.session_policy = session_policy
        # Built per actor: the audit events it writes name who acted.
        self.administration = administration
        self.verification = verification
        self.notifier = notifier
        self.sessions = sessions
        self.revoke_grants = revoke_grants
        self.tell_portals = tell_portals
        # The district's name (in the mail) and the relationship labels it offers.
        self.options = options
        # The holder's own deletion (Account Preferences) goes through the same service.
        self.deletion = deletion

    # --- finding ------------------------------------------------------------------------------
    def find(self, actor: Actor, account_id: str) -> Account:
        """Return the account ``account_id`` if the actor reaches it; else raise ``OutOfReach``."""
        wanted = clean_id(account_id)
        account = (
            self.session.execute(
                select(Account).where(Account.id == wanted, actor.reaches_accounts())
            ).scalar_one_or_none()
            if wanted is not None
            else None
        )
        if account is None:
            raise OutOfReach(account_id)
        return account

    def _acting(self, actor: Actor, permission: Permission, account_id: str) -> Account:
        actor.require(permission)
        return self.find(actor, account_id)

    # --- reading ------------------------------------------------------------------------------
    def account(self, actor: Actor, account_id: str) -> AccountView:
        """Return what the account page shows of ``account_id``."""
        account = self._acting(actor, Permission.VIEW, account_id)
        now = self.clock.now()
        view = AccountView(
            id=account.id,
            type=account.type,
            username=account.username,
            email=account.email,
            first_name=account.first_name,
            last_name=account.last_name,
            state=account_state(account, now=now, locked=is_locked(self.lockout, account)),
            email_verified_at=account.email_verified_at,
            created_at=account.created_at,
            expires_at=account.expires_at,
            disabled_reason=account.disabled_reason,
            is_test_account=account.is_test_account,
            must_change_password=account.must_change_password,
            login_count=account.login_count,
            last_login_at=account.current_login_at,
            last_login_ip=account.current_login_ip,
            students=self._students(account),
            signins=self._signins(account.id),
            events=self._events(account.id),
            sessions=self._live_sessions(account.id, now),
            grants=self._grants(account.id, now),
        )
        # Reads only; ending the transaction returns the connection to the pool.
        self.session.commit()
        return view

    def _students(self, account: Account) -> list[LinkedStudentView]:
        rows = self.session.execute(
            select(Student, School, GuardianLink.relationship)
            .join(GuardianLink, GuardianLink.student_id == Student.id)
            .join(School, School.id == Student.school_id)
            .where(GuardianLink.account_id == account.id)
            .order_by(Student.first_name, Student.last_name, Student.sis_id)
        ).all()
        return [
            LinkedStudentView(
                sis_id=student.sis_id,
                first_name=student.first_name,
                last_name=student.last_name,
                grade=student.grade,
                school_code=school.code,
                school_name=school.name,
                relationship=relationship,
                is_primary=student.id == account.primary_student_id,
            )
            for student, school, relationship in rows
        ]

    def _signins(self, account_id: str) -> list[SignInRecord]:
        events = self.session.execute(
            select(AuditEvent)
            .where(AuditEvent.account_id == account_id, AuditEvent.name.startswith("signin."))
            .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id)
            .limit(HISTORY_LIMIT)
        ).scalars()
        return [
            SignInRecord(
                at=event.occurred_at,
                outcome=event.name.removeprefix("signin."),
                reason=_text(event.details.get("reason")),
                ip_address=event.ip_address,
                client_id=event.client_id,
                user_agent=_text(event.details.get("user_agent")),
            )
            for event in events
        ]

    def _events(self, account_id: str) -> list[AuditRecord]:
        events = self.session.execute(
            select(AuditEvent)
            .where(AuditEvent.account_id == account_id)
            .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id)
            .limit(HISTORY_LIMIT)
        ).scalars()
        return [
            AuditRecord(
                at=event.occurred_at,
                name=event.name,
                actor=_text(event.details.get("actor")),
                client_id=event.client_id,
                ip_address=event.ip_address,
                details=dict(event.details),
            )
            for event in events
        ]

    def _live_sessions(self, account_id: str, now: datetime) -> list[LiveSession]:
        policy = self.session_policy
        rows = list(
            self.session.execute(
                select(OPSession)
                .where(
                    OPSession.account_id == account_id,
                    OPSession.last_seen_at >= now - policy.idle,
                    OPSession.created_at >= now - policy.absolute,
                )
                .order_by(OPSession.created_at.desc(), OPSession.id)
            ).scalars()
        )
        clients: dict[str, list[str]] = {row.id: [] for row in rows}
        if rows:
            for op_session_id, client_id in self.session.execute(
                select(SessionClient.op_session_id, SessionClient.client_id)
                .where(SessionClient.op_session_id.in_(list(clients)))
                .order_by(SessionClient.created_at)
            ):
                clients[op_session_id].append(client_id)
        return [
            LiveSession(
                id=row.id,
                created_at=row.created_at,
                last_seen_at=row.last_seen_at,
                ip_address=row.ip_address,
                user_agent=row.user_agent,
                client_ids=tuple(clients[row.id]),
                emulated_by=row.emulated_by,
            )
            for row in rows
        ]

    def _grants(self, account_id: str, now: datetime) -> list[GrantView]:
        rows = self.session.execute(
            select(RefreshTokenFamily, Client.name)
            .join(Client, Client.client_id == RefreshTokenFamily.client_id)
            .where(
                RefreshTokenFamily.account_id == account_id,
                RefreshTokenFamily.revoked_at.is_(None),
                RefreshTokenFamily.expires_at > now,
            )
            .order_by(RefreshTokenFamily.created_at.desc(), RefreshTokenFamily.id)
        ).all()
        return [
            GrantView(
                family_id=family.id,
                client_id=family.client_id,
                client_name=name,
                scope=family.scope,
                created_at=family.created_at,
                expires_at=family.expires_at,
            )
            for family, name in rows
        ]

    # --- the seed's actions -------------------------------------------------------------------
    def unlink_student(self, actor: Actor, account_id: str, sis_id: str) -> None:
        """Remove the student from the account and mail the account "a student has been removed".

        A student row has one school here, so removing the link removes it "at every school".
        """
        account = self._acting(actor, Permission.MANAGE_ACCOUNTS, account_id)
        wanted = clean_id(sis_id)
        found = (
            self.session.execute(
                select(GuardianLink, Student)
                .join(Student, Student.id == GuardianLink.student_id)
                .where(
                    GuardianLink.account_id == account.id,
                    Student.sis_id == wanted,
                    actor.reaches_students(),
                )
            ).first()
            if wanted is not None
            else None
        )
        if found is None:
            raise StudentNotLinked(sis_id)
        link, student = found
        unlinking = GuardianUnlinking(self.session, notifier=self.notifier, district_name=self.options.name)
        unlinking.remove(account, link, student, actor=actor.label)
        self.session.commit()

    def delete_account(self, actor: Actor, account_id: str, reason: str) -> Deleted:
        """Delete the account for good: mail the holder, sign it out everywhere, revoke its tokens.

        The mail is queued before the row goes; the outbox row keeps no link to the account
        (its foreign key is SET NULL). The tombstone, ``account.deleted``, names the account id,
        type, actor, reason and counts, and nothing personal (no name, address or username).
        """
        account = self._acting(actor, Permission.MANAGE_ACCOUNTS, account_id)
        return self.deletion.delete(account, actor=actor.label, reason=_reason(reason))

    def disable(self, actor: Actor, account_id: str, reason: str) -> int:
        """Disable the account and sign it out everywhere; return how many sessions ended."""
        account = self._acting(actor, Permission.MANAGE_ACCOUNTS, account_id)
        return self.administration(actor.label).disable(account, reason=_reason(reason))

    def enable(self, actor: Actor, account_id: str) -> bool:
        """Let a disabled account sign in again; return whether it was disabled."""
        account = self._acting(actor, Permission.MANAGE_ACCOUNTS, account_id)
        return self.administration(actor.label).enable(account)

    def set_expiry(self, actor: Actor, account_id: str, at: datetime | None) -> int:
        """Set when the account expires, or clear it with None; return how many sessions ended."""
        account = self._acting(actor, Permission.MANAGE_ACCOUNTS, account_id)
        if at is not None and at.tzinfo is None:
            raise ValueError("the expiry must say its time zone")
        return self.administration(actor.label).expire(account, at)

    def set_temporary_password(self, actor: Actor, account_id: str) -> TemporaryPassword:
        """Give the account a generated temporary password, to be shown once."""
        account = self._acting(actor, Permission.SET_TEMPORARY_PASSWORD, account_id)
        return self.administration(actor.label).set_temporary_password(account)

    def unlock(self, actor: Actor, account_id: str) -> bool:
        """Lift the lockout of the account's username and address; return whether either was locked."""
        account = self._acting(actor, Permission.UNLOCK, account_id)
        by_username = self.lockout.unlock_username(account.username)
        by_address = self.lockout.unlock_username(account.email)
        was_locked = by_username or by_address
        audit(
            self.session, "account.unlocked", account_id=account.id, actor=actor.label, was_locked=was_locked
        )
        self.session.commit()
        return was_locked

    def resend_verification(self, actor: Actor, account_id: str) -> bool:
        """Mail the account a new verification link; return False for a test account (no mail).

        Raise ``NotPending`` unless the account is still pending.
        """
        account = self._acting(actor, Permission.RESEND_VERIFICATION, account_id)
        if account.status is not AccountStatus.PENDING or account.email_verified_at is not None:
            raise NotPending(account.id)
        # Staff ask on the holder's behalf: the self-service resend limit does not apply.
        sent = self.verification.send(account, actor=actor.label)
        self.session.commit()
        return sent

    def change_type(
        self, actor: Actor, account_id: str, new_type: AccountType, *, relationship: str = "Guardian"
    ) -> bool:
        """Make a parent account a student one or the reverse; return whether the type changed.

        ``relationship`` labels the links of a student account that becomes a parent's: one of
        the district's relationships (``UnknownRelationship`` otherwise).
        """
        account = self._acting(actor, Permission.MANAGE_ACCOUNTS, account_id)
        try:
            new_type = AccountType(new_type)
        except ValueError:
            raise UnchangeableType(new_type) from None
        if new_type not in (AccountType.PARENT, AccountType.STUDENT):
            raise UnchangeableType(new_type)
        if account.type is new_type:
            return False
        links = select(func.count()).select_from(GuardianLink).where(GuardianLink.account_id == account.id)
        if new_type is AccountType.STUDENT:
            linked = int(self.session.execute(links).scalar_one())
            if linked > 1:
                raise TooManyStudents(linked)
            label = SELF
        else:
            label = canonical_relationship(relationship, self.options.relationships)
        self.session.execute(
            update(GuardianLink).where(GuardianLink.account_id == account.id).values(relationship=label)
        )
        previous, account.type = account.type, new_type
        audit(
            self.session,
            "account.type_changed",
            account_id=account.id,
            actor=actor.label,
            previous=previous.value,
            type=new_type.value,
            relationship=label,
        )
        self.session.commit()
        return True

    def mark_test(self, actor: Actor, account_id: str, is_test: bool) -> bool:
        """Mark the account as a test account (no mail, hidden by default) or clear the mark.

        Return whether anything changed.
        """
        account = self._acting(actor, Permission.MANAGE_ACCOUNTS, account_id)
        if account.is_test_account == is_test:
            return False
        account.is_test_account = is_test
        audit(self.session, "account.test_marked", account_id=account.id, actor=actor.label, is_test=is_test)
        self.session.commit()
        return True


def _reason(reason: str) -> str:
    cleaned = reason.strip()
    if not cleaned or len(cleaned) > MAX_REASON_LENGTH or not cleaned.isprintable():
        raise InvalidReason(reason)
    return cleaned


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
