"""Reset all portal account passwords (the seed's district-admin action), as a resumable job.

``PasswordResets`` (no HTTP):
    ``preview(actor) -> int``          how many parent and student accounts a run would touch;
    ``start(actor) -> PasswordResetRun``  records the run (audited); raises ``ResetAlreadyRunning``;
    ``run_batch(run, size) -> bool``   advances a run by one batch; whether more remain;
    ``advance(max_batches) -> int``    what ``idp worker`` calls: advances the unfinished runs.

Both ``preview`` and ``start`` need ``Permission.RESET_ALL_PASSWORDS`` and the whole district's
reach (an API client limited to some schools is refused, ``NotPermitted``).

A run sets ``must_change_password`` on every parent and student account created up to its
``cutoff``, walking them by id in batches, each its own short transaction that also moves
``next_account_id``: a stopped run resumes where it was, a batch done twice changes nothing, and no
transaction ever spans all the rows. Several workers may advance runs at once: the run row is taken
with SKIP LOCKED (PostgreSQL; SQLite's writers take turns anyway).

What a run does not do: end sessions or revoke tokens. The issue asks for a forced change at the
next sign-in, and that is what the flag gives (``PasswordPolicyService.change_due``); signing a
whole district out at once would send a back-channel logout for every session in one go. Where
passwords are thought stolen, disable the accounts concerned instead, which ends everything.
"""

from __future__ import annotations

from sqlalchemy import func, select, update

from idp.accounts.models import Account, AccountType
from idp.admin.actor import Actor, NotPermitted
from idp.admin.models import PasswordResetRun
from idp.admin.roles import Permission
from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession

BATCH_SIZE = 500
# Batches per worker pass: 10,000 accounts, a few seconds of work before the mail is looked at again.
BATCHES_PER_PASS = 20

_PORTAL_ACCOUNTS = Account.type.in_((AccountType.PARENT, AccountType.STUDENT))


class ResetAlreadyRunning(Exception):
    """A run has not finished yet; it is ``run``."""

    def __init__(self, run: PasswordResetRun) -> None:
        super().__init__(f"password reset run {run.id} is still running")
        self.run = run


class PasswordResets:
    def __init__(self, session: DbSession, *, clock: Clock) -> None:
        self.session = session
        self.clock = clock

    def _require(self, actor: Actor) -> None:
        actor.require(Permission.RESET_ALL_PASSWORDS)
        if not actor.whole_district:
            raise NotPermitted(Permission.RESET_ALL_PASSWORDS)

    def preview(self, actor: Actor) -> int:
        """Return how many parent and student accounts a run started now would touch."""
        self._require(actor)
        count = int(
            self.session.execute(
                select(func.count())
                .select_from(Account)
                .where(_PORTAL_ACCOUNTS, Account.created_at <= self.clock.now())
            ).scalar_one()
        )
        self.session.commit()
        return count

    def unfinished(self) -> PasswordResetRun | None:
        """Return the run that has not finished, if there is one."""
        return self.session.execute(
            select(PasswordResetRun)
            .where(PasswordResetRun.finished_at.is_(None))
            .order_by(PasswordResetRun.created_at)
            .limit(1)
        ).scalar_one_or_none()

    def start(self, actor: Actor) -> PasswordResetRun:
        """Record a run over every account created until now; the worker carries it out."""
        self._require(actor)
        running = self.unfinished()
        if running is not None:
            raise ResetAlreadyRunning(running)
        now = self.clock.now()
        total = int(
            self.session.execute(
                select(func.count()).select_from(Account).where(_PORTAL_ACCOUNTS, Account.created_at <= now)
            ).scalar_one()
        )
        run = PasswordResetRun(
            started_by=actor.label, cutoff=now, next_account_id="", touched=0, total=total, created_at=now
        )
        self.session.add(run)
        self.session.flush()
        audit(self.session, "password_reset_run.started", actor=actor.label, run_id=run.id, total=total)
        self.session.commit()
        return run

    def run_batch(self, run: PasswordResetRun, size: int = BATCH_SIZE) -> bool:
        """Flag the next ``size`` accounts of ``run`` and commit; return whether more remain."""
        if run.finished_at is not None:
            return False
        ids = list(
            self.session.execute(
                select(Account.id)
                .where(_PORTAL_ACCOUNTS, Account.id > run.next_account_id, Account.created_at <= run.cutoff)
                .order_by(Account.id)
                .limit(size)
            ).scalars()
        )
        if ids:
            self.session.execute(
                update(Account).where(Account.id.in_(ids)).values(must_change_password=True),
                execution_options={"synchronize_session": False},
            )
            run.next_account_id = ids[-1]
            run.touched += len(ids)
        more = len(ids) == size
        if not more:
            run.finished_at = self.clock.now()
            audit(
                self.session,
                "password_reset_run.finished",
                actor=run.started_by,
                run_id=run.id,
                touched=run.touched,
            )
        self.session.commit()
        return more

    def advance(self, max_batches: int = BATCHES_PER_PASS, size: int = BATCH_SIZE) -> int:
        """Advance the unfinished runs by up to ``max_batches`` batches; return how many ran."""
        done = 0
        while done < max_batches:
            run = self.session.execute(
                select(PasswordResetRun)
                .where(PasswordResetRun.finished_at.is_(None))
                .order_by(PasswordResetRun.created_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).scalar_one_or_none()
            if run is None:
                self.session.commit()
                break
            self.run_batch(run, size)
            done += 1
        return done
