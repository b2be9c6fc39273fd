"""Guardian invitations: a single-use link, mailed to a roster guardian, that links their students.

``invite`` mails every roster guardian of the named students (a school's, or a list) who has an
email address a link ``/invitations/gi_…`` valid ``IDP_INVITATION_SECONDS``; the row keeps only
the token's SHA-256, and a guardian has one live invitation: inviting again replaces it, so the
older link is refused. Following the link, the guardian signs in (``accept``) or creates an
account (``register``); either links the invitation's students, still related to the guardian
and active, to that account with the roster's relationship (Parent, Guardian, Relative), without
an Access Password. The link works once; an expired one says so (``InvitationExpired``), and the
page offers the Access ID path instead. Each invitation sent and accepted is audited.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Select, select, update
from sqlalchemy.exc import IntegrityError

from idp.accounts.models import Account, AccountStatus, AccountType
from idp.accounts.password_policy import PasswordPolicyService, Violation
from idp.accounts.registration import (
    Problem,
    Problems,
    RegistrationRefused,
    check_email,
    check_name,
    check_username,
    password_context,
)
from idp.accounts.service import AccountService
from idp.accounts.verification import EmailVerification
from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession
from idp.mail.compose import MessageComposer
from idp.mail.notifications import Notifier
from idp.mail.outbox import Outbox
from idp.students.guardianship import GuardianshipService
from idp.students.models import School, Student
from idp.students.roster.models import (
    ROSTER_RELATIONSHIPS,
    GuardianInvitation,
    GuardianInvitationStudent,
    RosterGuardian,
    RosterGuardianStudent,
)
from idp.tokens import new_secret, secret_hash

TOKEN_PREFIX = "gi"  # noqa: S105 (the prefix a link's token carries, not a secret)
# A token is ``gi_`` and 43 URL-safe characters; anything much longer names nothing.
MAX_TOKEN_LENGTH = 100
# Guardians mailed per transaction while inviting a whole school.
BATCH_SIZE = 500
RELATIONSHIP_LABELS = tuple(ROSTER_RELATIONSHIPS.values())


class InvitationInvalid(Exception):
    """Unknown, replaced by a newer invitation, or for a guardian the roster removed."""


class InvitationUsed(InvitationInvalid):
    """The link worked once already."""


class InvitationExpired(Exception):
    """The link is older than ``IDP_INVITATION_SECONDS``."""


class NotAParent(Exception):
    """Only a parent account may accept: a student's or staff member's may not."""


class UnknownStudents(LookupError):
    def __init__(self, ids: Sequence[str]) -> None:
        super().__init__(f"no such student: {', '.join(ids)}")
        self.ids = tuple(ids)


class UnknownSchool(LookupError):
    pass


@dataclass(frozen=True)
class InvitedStudent:
    first_name: str
    school_name: str


@dataclass(frozen=True)
class InvitationView:
    """What the page may show once the token checked: the school and the students' first names."""

    first_name: str
    last_name: str
    email: str
    relationship: str
    students: tuple[InvitedStudent, ...]

    @property
    def school_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(student.school_name for student in self.students))


@dataclass(frozen=True)
class SentInvitation:
    guardian_sourced_id: str
    email: str
    student_ids: tuple[str, ...]


@dataclass
class Invited:
    """What ``invite`` did: the invitations sent, and the guardians it could not mail."""

    sent: list[SentInvitation]
    without_email: int = 0


@dataclass(frozen=True)
class InvitedRegistration:
    first_name: str
    last_name: str
    email: str
    username: str
    password: str
    password_confirm: str
    ip_address: str | None = None


@dataclass(frozen=True)
class Accepted:
    account: Account
    students: tuple[Student, ...]


class GuardianInvitations:
    def __init__(
        self,
        session: DbSession,
        *,
        clock: Clock,
        life: timedelta,
        outbox: Outbox,
        composer: MessageComposer,
        notifier: Notifier,
        guardianship: GuardianshipService,
        accounts: AccountService,
        policies: PasswordPolicyService,
        verification: EmailVerification,
        link: Callable[[str], str],
        district_name: str,
        languages: tuple[str, ...],
    ) -> None:
        self.session = session
        self.clock = clock
        self.life = life
        self.outbox = outbox
        self.composer = composer
        self.notifier = notifier
        self.guardianship = guardianship
        self.accounts = accounts
        self.policies = policies
        self.verification = verification
        self.link = link
        self.district_name = district_name
        self.languages = languages

    # --- sending ------------------------------------------------------------------------------
    def invite(
        self, *, school_code: str | None = None, student_ids: Sequence[str] = (), actor: str
    ) -> Invited:
        """Mail an invitation to every roster guardian with an address of these students."""
        students = self._named_students(school_code, student_ids)
        invited = Invited(sent=[])
        last = ""
        while True:
            # The guardians of the named students, a batch at a time, in id order.
            guardians = list(
                self.session.execute(
                    select(RosterGuardian)
                    .where(
                        RosterGuardian.id > last,
                        RosterGuardian.id.in_(
                            select(RosterGuardianStudent.guardian_id).where(
                                RosterGuardianStudent.student_id.in_(students)
                            )
                        ),
                    )
                    .order_by(RosterGuardian.id)
                    .limit(BATCH_SIZE)
                ).scalars()
            )
            if not guardians:
                break
            for guardian in guardians:
                if not guardian.email:
                    invited.without_email += 1
                    continue
                invited.sent.append(self._send(guardian, students, actor=actor))
            last = guardians[-1].id
            self.session.commit()
        return invited

    def _named_students(self, school_code: str | None, student_ids: Sequence[str]) -> Select[str]:
        """Return a query of the active students' row ids that ``invite`` was asked for."""
        if school_code is not None:
            school = self.session.execute(
                select(School.id).where(School.code == school_code.strip())
            ).scalar()
            if school is None:
                raise UnknownSchool(school_code)
            return select(Student.id).where(Student.school_id == school, Student.active.is_(True))
        wanted = list(dict.fromkeys(sid.strip() for sid in student_ids))
        found = set(self.session.execute(select(Student.sis_id).where(Student.sis_id.in_(wanted))).scalars())
        missing = [sid for sid in wanted if sid not in found]
        if missing:
            raise UnknownStudents(missing)
        return select(Student.id).where(Student.sis_id.in_(wanted), Student.active.is_(True))

    def _send(self, guardian: RosterGuardian, students: Select[str], *, actor: str) -> SentInvitation:
        linked = list(
            self.session.execute(
                select(Student)
                .join(RosterGuardianStudent, RosterGuardianStudent.student_id == Student.id)
                .where(RosterGuardianStudent.guardian_id == guardian.id, Student.id.in_(students))
                .order_by(Student.first_name, Student.last_name, Student.sis_id)
            ).scalars()
        )
        # One live invitation per guardian: the new one replaces the old, whose link dies with it.
        old = self.session.execute(
            select(GuardianInvitation).where(GuardianInvitation.guardian_id == guardian.id)
        ).scalar_one_or_none()
        if old is not None:
            self.session.delete(old)
            self.session.flush()
        token = new_secret(TOKEN_PREFIX)
        now = self.clock.now()
        invitation = GuardianInvitation(
            guardian_id=guardian.id,
            token_hash=secret_hash(token),
            created_at=now,
            expires_at=now + self.life,
            students=[GuardianInvitationStudent(student_id=student.id) for student in linked],
        )
        self.session.add(invitation)
        self.session.flush()
        recipient = _GuardianRecipient(guardian, self._language(guardian.language))
        composed = self.composer.compose(
            "guardian_invitation",
            recipient,
            link=self.link(token),
            district_name=self.district_name,
            students=[student.first_name for student in linked],
            schools=list(dict.fromkeys(student.school.name for student in linked)),
            expires_at=invitation.expires_at,
            days=max(1, round(self.life / timedelta(days=1))),
        )
        # The guardian has no account yet: the message belongs to none.
        self.outbox.queue(
            to=guardian.email or "",
            subject=composed.subject,
            body=composed.text,
            html=composed.html,
            purpose="guardian_invitation",
        )
        student_ids = tuple(student.sis_id for student in linked)
        audit(
            self.session,
            "guardian_invitation.sent",
            actor=actor,
            guardian=guardian.sourced_id,
            student_ids=list(student_ids),
            replaced=old is not None,
            expires_at=invitation.expires_at.isoformat(),
        )
        return SentInvitation(guardian.sourced_id, guardian.email or "", student_ids)

    def _language(self, tag: str | None) -> str | None:
        """The offered language that ``tag`` (``es-MX``) asks for, if any."""
        if not tag:
            return None
        primary = tag.split("-", 1)[0].lower()
        return next((language for language in self.languages if language.lower() == primary), None)

    # --- following the link ---------------------------------------------------------------------
    def find(self, token: str) -> InvitationView:
        """Return what the page shows of a usable invitation; raise if it is not one."""
        invitation = self._usable(token)
        guardian = invitation.guardian
        students = self._students(invitation)
        if not students:
            raise InvitationInvalid()  # the roster took every one of them away since
        return InvitationView(
            first_name=guardian.first_name,
            last_name=guardian.last_name,
            email=guardian.email or "",
            relationship=guardian.relationship,
            students=tuple(InvitedStudent(student.first_name, student.school.name) for student in students),
        )

    def accept(self, token: str, account: Account, *, ip_address: str | None = None) -> Accepted:
        """Link the invitation's students to ``account`` (a parent's), once; commit."""
        if account.type is not AccountType.PARENT:
            raise NotAParent()
        invitation = self._usable(token)
        accepted = self._accept(invitation, account, ip_address=ip_address)
        self.session.commit()
        return accepted

    def register(self, token: str, entry: InvitedRegistration) -> Accepted:
        """Create a parent account and link the invitation's students to it; commit.

        An account made with the address the invitation was mailed to is verified by it: the
        link proved the mailbox. Another address gets the usual verification mail.
        """
        invitation = self._usable(token)
        students = self._students(invitation)
        if not students:
            raise InvitationInvalid()
        problems = Problems()
        first_name = check_name(problems, "first_name", entry.first_name)
        last_name = check_name(problems, "last_name", entry.last_name)
        email = check_email(problems, "email", entry.email)
        username = check_username(problems, "username", entry.username, self.accounts)
        rules = self.policies.rules_for_schools(student.school_id for student in students)
        problems.rules = rules
        context = password_context(
            username=username,
            email=email,
            first_name=first_name,
            last_name=last_name,
            district=self.district_name,
        )
        problems.password = rules.check(entry.password, context=context)
        if entry.password != entry.password_confirm:
            problems.password.append(Violation.MISMATCH)
        if problems:
            raise RegistrationRefused(problems)
        proven = (invitation.guardian.email or "").casefold() == email.casefold()
        try:
            account = self.accounts.create(
                username=username,
                email=email,
                password=entry.password,
                first_name=first_name,
                last_name=last_name,
                account_type=AccountType.PARENT,
                status=AccountStatus.CONFIRMED if proven else AccountStatus.PENDING,
            )
        except IntegrityError:
            self.session.rollback()
            problems.add("username", Problem.USERNAME_TAKEN)
            raise RegistrationRefused(problems) from None
        audit(
            self.session,
            "account.registered",
            account_id=account.id,
            ip_address=entry.ip_address,
            invitation=True,
        )
        if proven:
            account.email_verified_at = self.clock.now()
            audit(self.session, "email.verified", account_id=account.id, by="guardian_invitation")
        else:
            self.verification.send(account)
        accepted = self._accept(invitation, account, ip_address=entry.ip_address)
        self.session.commit()
        return accepted

    def _usable(self, token: str) -> GuardianInvitation:
        if not token.startswith(f"{TOKEN_PREFIX}_") or len(token) > MAX_TOKEN_LENGTH:
            raise InvitationInvalid()
        # A SHA-256 of 256 random bits: looking it up by its hash leaks nothing of it.
        invitation = self.session.execute(
            select(GuardianInvitation).where(GuardianInvitation.token_hash == secret_hash(token))
        ).scalar_one_or_none()
        if invitation is None:
            raise InvitationInvalid()
        if invitation.used_at is not None:
            raise InvitationUsed()
        if invitation.expired(self.clock.now()):
            raise InvitationExpired()
        return invitation

    def _students(self, invitation: GuardianInvitation) -> list[Student]:
        """The invitation's students that are still active and still the guardian's."""
        return list(
            self.session.execute(
                select(Student)
                .join(GuardianInvitationStudent, GuardianInvitationStudent.student_id == Student.id)
                .join(
                    RosterGuardianStudent,
                    (RosterGuardianStudent.student_id == Student.id)
                    & (RosterGuardianStudent.guardian_id == invitation.guardian_id),
                )
                .where(GuardianInvitationStudent.invitation_id == invitation.id, Student.active.is_(True))
                .order_by(Student.first_name, Student.last_name, Student.sis_id)
            ).scalars()
        )

    def _accept(
        self, invitation: GuardianInvitation, account: Account, *, ip_address: str | None
    ) -> Accepted:
        now = self.clock.now()
        # One conditional update: of two tabs accepting at once, one wins; the other is refused.
        used = self.session.execute(
            update(GuardianInvitation)
            .where(
                GuardianInvitation.id == invitation.id,
                GuardianInvitation.used_at.is_(None),
                GuardianInvitation.expires_at > now,
            )
            .values(used_at=now, account_id=account.id)
            .execution_options(synchronize_session=False)
        )
        if getattr(used, "rowcount", 0) != 1:
            self.session.rollback()
            raise InvitationUsed()
        guardian = invitation.guardian
        students = self._students(invitation)
        if not students:
            self.session.rollback()
            raise InvitationInvalid()
        relationship = guardian.relationship
        for student in students:
            self.guardianship.link(account, student, relationship, allowed=RELATIONSHIP_LABELS)
            self.notifier.send(
                account,
                "student_linked",
                student_name=f"{student.first_name} {student.last_name}",
                relationship=relationship,
            )
        # A later roster removal of this guardian, or of a relation, unlinks this account.
        guardian.account_id = account.id
        audit(
            self.session,
            "guardian_invitation.accepted",
            account_id=account.id,
            ip_address=ip_address,
            guardian=guardian.sourced_id,
            student_ids=[student.sis_id for student in students],
        )
        return Accepted(account, tuple(students))


class _GuardianRecipient:
    """A roster guardian as the mail templates read a recipient: no account, no test mark."""

    def __init__(self, guardian: RosterGuardian, locale: str | None) -> None:
        self.id = guardian.id
        self.email = guardian.email or ""
        self.locale = locale
        self.is_test_account = False
        self.display_name = f"{guardian.first_name} {guardian.last_name}"
        self.first_name = guardian.first_name
