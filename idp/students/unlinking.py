"""Removing a student from a guardian's account, and telling the holder "a student has been removed".

One service for every way a link ends from outside the account: staff removing a student
(``idp.admin.accounts``), and a roster that removes a student or a guardian relation
(``idp.students.roster``). It works in the caller's transaction and never commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from idp.accounts.models import Account
from idp.audit import audit
from idp.db import DbSession
from idp.mail.notifications import Notifier
from idp.students.models import GuardianLink, Student


class GuardianUnlinking:
    def __init__(self, session: DbSession, *, notifier: Notifier, district_name: str) -> None:
        self.session = session
        self.notifier = notifier
        self.district_name = district_name

    def remove(
        self, account: Account, link: GuardianLink, student: Student, *, actor: str, **details: Any
    ) -> bool:
        """Delete ``link``, pick the next primary student, mail and audit; return whether mailed."""
        relationship = link.relationship
        self.session.delete(link)
        self.session.flush()
        if account.primary_student_id == student.id:
            # As at registration: the first student linked becomes the primary one.
            account.primary_student_id = self.session.execute(
                select(GuardianLink.student_id)
                .where(GuardianLink.account_id == account.id)
                .order_by(GuardianLink.created_at, GuardianLink.id)
                .limit(1)
            ).scalar_one_or_none()
        notified = self.notifier.send(
            account,
            "student_removed",
            student_name=student.first_name,
            district_name=self.district_name,
        )
        audit(
            self.session,
            "guardian_link.removed",
            account_id=account.id,
            actor=actor,
            student_id=student.sis_id,
            relationship=relationship,
            notified=notified,
            **details,
        )
        return notified
