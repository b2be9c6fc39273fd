"""A parent's own data in Account Preferences, without HTTP: their students' links, their signed-in
devices, a copy of everything kept about them, and deleting the account.

Every change is one transaction with its audit event; portals are told of ended sessions
(back-channel logout) only after the commit. Removing a student and deleting the account are the
same services staff use (``GuardianUnlinking``, ``AccountDeletion``), so both leave the same trail.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select

from idp.accounts.deletion import AccountDeletion, Deleted
from idp.accounts.lockout import LockedOut
from idp.accounts.models import Account, OPSession
from idp.accounts.service import AccountService, InvalidCredentials, SignInContext
from idp.accounts.sessions import EndedSession, SessionService
from idp.accounts.user_agents import device_name
from idp.audit import AuditEvent, audit
from idp.clock import Clock
from idp.db import DbSession
from idp.policy import SessionPolicy
from idp.students.models import GuardianLink, School, Student
from idp.students.relationships import canonical_relationship
from idp.students.unlinking import GuardianUnlinking

# (account id, sid, reason) -> revoke the refresh-token families granted in that OP session.
RevokeSessionGrants = Callable[[str, str, str], int]


class PortalGrantsReader(Protocol):
    """The portals' side of a parent's data (``idp.oauth.portal_grants.PortalGrants``)."""

    def portals_by_session(self, op_session_ids: Sequence[str]) -> dict[str, list[str]]: ...

    def consents(self, account_id: str) -> list[tuple[str, str, str, datetime]]: ...


TellPortals = Callable[[Sequence[EndedSession]], None]
# The audit trail's ``actor`` for what the holder does to their own account.
HOLDER = "holder"
# The export carries this many sign-ins, newest first (the audit trail keeps them longer).
SIGNIN_HISTORY_LIMIT = 500
MAX_ID_LENGTH = 64


class StudentNotLinked(LookupError):
    """The student named is not linked to this account (or names nothing)."""


class DeviceNotFound(LookupError):
    """The device named is not one of this account's signed-in devices."""


class WrongPassword(Exception):
    """The password typed to confirm is not the account's."""


@dataclass(frozen=True)
class Device:
    """One signed-in browser: what it is, roughly where, and when it was last seen."""

    id: str
    browser: str | None
    system: str | None
    # The network (an IPv4 /24, an IPv6 /48), not the address: no GeoIP source is kept here.
    network: str | None
    signed_in_at: datetime
    last_seen_at: datetime
    portals: tuple[str, ...]
    is_current: bool


def network_of(ip_address: str | None) -> str | None:
    """Return the /24 (IPv4) or /48 (IPv6) network an address belongs to, or None."""
    if not ip_address:
        return None
    try:
        address = ipaddress.ip_address(ip_address)
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class OwnData:
    def __init__(
        self,
        session: DbSession,
        *,
        clock: Clock,
        session_policy: SessionPolicy,
        accounts: AccountService,
        sessions: SessionService,
        unlinking: GuardianUnlinking,
        deletion: AccountDeletion,
        revoke_session_grants: RevokeSessionGrants,
        tell_portals: TellPortals,
        portal_grants: PortalGrantsReader,
        relationships: tuple[str, ...],
    ) -> None:
        self.session = session
        self.clock = clock
        self.session_policy = session_policy
        self.accounts = accounts
        self.sessions = sessions
        self.unlinking = unlinking
        self.deletion = deletion
        self.revoke_session_grants = revoke_session_grants
        self.tell_portals = tell_portals
        self.portal_grants = portal_grants
        self.relationships = relationships

    # --- students -----------------------------------------------------------------------------
    def linked(self, account: Account, student_id: str) -> tuple[GuardianLink, Student]:
        """Return the account's link to ``student_id`` and the student; else ``StudentNotLinked``."""
        if not student_id or len(student_id) > MAX_ID_LENGTH:
            raise StudentNotLinked(student_id)
        found = self.session.execute(
            select(GuardianLink, Student)
            .join(Student, Student.id == GuardianLink.student_id)
            .where(
                GuardianLink.account_id == account.id,
                GuardianLink.status == "active",
                Student.id == student_id,
            )
        ).first()
        if found is None:
            raise StudentNotLinked(student_id)
        return found[0], found[1]

    def remove_student(self, account: Account, student_id: str) -> Student:
        """Remove the student from the account, mail "a student has been removed", audit; commit."""
        link, student = self.linked(account, student_id)
        self.unlinking.remove(account, link, student, actor=HOLDER)
        self.session.commit()
        return student

    def change_relationship(self, account: Account, student_id: str, relationship: str) -> Student:
        """Relabel the account's link to the student; raise ``UnknownRelationship`` for a label the
        district does not offer. An unchanged label writes nothing."""
        link, student = self.linked(account, student_id)
        label = canonical_relationship(relationship, self.relationships)
        if label != link.relationship:
            previous, link.relationship = link.relationship, label
            audit(
                self.session,
                "guardian_link.relationship_changed",
                account_id=account.id,
                actor=HOLDER,
                student_id=student.sis_id,
                relationship=label,
                previous_relationship=previous,
            )
        self.session.commit()
        return student

    # --- devices ------------------------------------------------------------------------------
    def _live_sessions(self, account: Account) -> list[OPSession]:
        # Emulated sessions are staff's, ended from the console or their banner, not listed here.
        now = self.clock.now()
        return list(
            self.session.execute(
                select(OPSession)
                .where(
                    OPSession.account_id == account.id,
                    OPSession.emulated_by.is_(None),
                    OPSession.last_seen_at >= now - self.session_policy.idle,
                    OPSession.created_at >= now - self.session_policy.absolute,
                )
                .order_by(OPSession.last_seen_at.desc(), OPSession.id)
            ).scalars()
        )

    def devices(self, account: Account, *, current: str | None) -> list[Device]:
        """Return the account's signed-in browsers, most recently seen first; ``current`` is the
        OP session id of the browser asking."""
        rows = self._live_sessions(account)
        portals = self.portal_grants.portals_by_session([row.id for row in rows])
        devices = []
        for row in rows:
            name = device_name(row.user_agent)
            devices.append(
                Device(
                    id=row.id,
                    browser=name.browser,
                    system=name.system,
                    network=network_of(row.ip_address),
                    signed_in_at=row.auth_time,
                    last_seen_at=row.last_seen_at,
                    portals=tuple(portals[row.id]),
                    is_current=row.id == current,
                )
            )
        self.session.commit()  # reads only: give the connection back
        return devices

    def sign_out_device(self, account: Account, device_id: str) -> None:
        """End one of the account's signed-in browsers; raise ``DeviceNotFound`` for any other id."""
        live = {row.id for row in self._live_sessions(account)}
        if not device_id or device_id not in live:
            raise DeviceNotFound(device_id)
        self._sign_out(account, [device_id], "device.signed_out")

    def sign_out_others(self, account: Account, *, keep: str | None) -> int:
        """End every signed-in browser of the account but ``keep``; return how many ended."""
        others = [row.id for row in self._live_sessions(account) if row.id != keep]
        return self._sign_out(account, others, "devices.signed_out")

    def _sign_out(self, account: Account, ids: list[str], event: str) -> int:
        ended = self.sessions.end_ids(account.id, ids)
        revoked = sum(
            self.revoke_session_grants(account.id, gone.sid, "signed_out_by_holder") for gone in ended
        )
        audit(
            self.session,
            event,
            account_id=account.id,
            actor=HOLDER,
            ended_sessions=len(ended),
            revoked_grants=revoked,
        )
        self.session.commit()
        self.tell_portals(ended)
        return len(ended)

    # --- a copy of the data -------------------------------------------------------------------
    def export(self, account: Account) -> dict[str, Any]:
        """Return everything kept about the account that is the holder's: profile, linked students,
        sign-in history, signed-in devices and consents (never another account's rows)."""
        exported = {
            "exported_at": _when(self.clock.now()),
            "profile": {
                "id": account.id,
                "type": account.type.value,
                "username": account.username,
                "email": account.email,
                "email_verified_at": _when(account.email_verified_at),
                "first_name": account.first_name,
                "last_name": account.last_name,
                "language": account.locale,
                "created_at": _when(account.created_at),
                "expires_at": _when(account.expires_at),
                "password_changed_at": _when(account.password_changed_at),
                "sign_in_count": account.login_count,
                "current_sign_in_at": _when(account.current_login_at),
                "current_sign_in_ip": account.current_login_ip,
                "previous_sign_in_at": _when(account.last_login_at),
                "previous_sign_in_ip": account.last_login_ip,
            },
            "students": self._students(account),
            "sign_in_history": self._signins(account),
            "devices": [
                {
                    "browser": device.browser,
                    "system": device.system,
                    "network": device.network,
                    "signed_in_at": _when(device.signed_in_at),
                    "last_seen_at": _when(device.last_seen_at),
                    "portals": list(device.portals),
                }
                for device in self.devices(account, current=None)
            ],
            "consents": self._consents(account),
        }
        audit(self.session, "account.data_exported", account_id=account.id, actor=HOLDER)
        self.session.commit()
        return exported

    def _students(self, account: Account) -> list[dict[str, Any]]:
        rows = self.session.execute(
            select(Student, School.name, GuardianLink)
            .join(GuardianLink, GuardianLink.student_id == Student.id)
            .join(School, School.id == Student.school_id)
            .where(GuardianLink.account_id == account.id)
            .order_by(GuardianLink.created_at, Student.sis_id)
        ).all()
        return [
            {
                "student_id": student.sis_id,
                "first_name": student.first_name,
                "last_name": student.last_name,
                "grade": student.grade,
                "school": school_name,
                "relationship": link.relationship,
                "primary": student.id == account.primary_student_id,
                "linked_at": _when(link.created_at),
            }
            for student, school_name, link in rows
        ]

    def _signins(self, account: Account) -> list[dict[str, Any]]:
        events = self.session.execute(
            select(AuditEvent)
            .where(AuditEvent.account_id == account.id, AuditEvent.name.startswith("signin."))
            .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id)
            .limit(SIGNIN_HISTORY_LIMIT)
        ).scalars()
        history = []
        for event in events:
            user_agent = event.details.get("user_agent")
            name = device_name(user_agent if isinstance(user_agent, str) else None)
            history.append(
                {
                    "at": _when(event.occurred_at),
                    "outcome": event.name.removeprefix("signin."),
                    "ip_address": event.ip_address,
                    "browser": name.browser,
                    "system": name.system,
                    "portal": event.client_id,
                }
            )
        return history

    def _consents(self, account: Account) -> list[dict[str, Any]]:
        return [
            {"portal": name, "client_id": client_id, "scope": scope, "granted_at": _when(granted_at)}
            for name, client_id, scope, granted_at in self.portal_grants.consents(account.id)
        ]

    # --- deleting the account -----------------------------------------------------------------
    def delete_account(self, account: Account, *, password: str, context: SignInContext) -> Deleted:
        """Check the password (under the sign-in lockout), then delete the account as staff would.

        Raises ``WrongPassword`` (its audit event stays) or the lockout's ``LockedOut``.
        """
        try:
            self.accounts.verify_password(account, password, context)
        except InvalidCredentials:
            self.session.commit()  # the failed check's audit event stays
            raise WrongPassword() from None
        except LockedOut:
            self.session.commit()
            raise
        return self.deletion.delete(
            account, actor=HOLDER, reason="deleted by the account holder", by_holder=True
        )


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
