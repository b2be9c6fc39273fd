"""Everything ``idp worker`` runs: mail, recovery answers, back-channel retries, session timeouts,
retention.

Each job is its own transaction (or several short ones). A job that fails is logged, its
transaction rolled back, and it is tried again after a growing wait, while the other jobs go on;
a dropped database connection is such a failure: the pool gives the next statement a new one
(SQLAlchemy invalidates a connection it saw drop, and PostgreSQL's pool pings before use).
Any number of workers may run at once: the outbox is shared through leases (idp.mail.delivery),
the other jobs take their rows with SKIP LOCKED or change them with single statements. ``stop``
(SIGTERM, from ``idp worker``) lets the current job finish, and the worker exits after it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import DBAPIError

from idp.accounts.sessions import EndedSession
from idp.audit import audit
from idp.mail.delivery import deliver_due, new_lease_owner
from idp.metrics import BACKCHANNEL_RETRIES
from idp.policy import Backoff
from idp.services import Services
from idp.worker.retention import Schedule, prune

log = logging.getLogger(__name__)

# Retention is counted in days: an hourly pass keeps each batch of deletes small, and passes
# more often would only scan the same tables again (idp.worker.retention).
PRUNE_EVERY = timedelta(hours=1)
# A job that failed waits 5, 10, 20, 40 seconds, then a minute, before it runs again: a database
# that restarts is back within the first waits, one that stays down is asked once a minute, and a
# job is never more than a minute late once it is back.
JOB_RETRIES = Backoff(first=timedelta(seconds=5), longest=timedelta(minutes=1), attempts=0)


@dataclass
class Job:
    """One of the worker's jobs, and when it may run again after failing."""

    name: str
    run: Callable[[], None]
    failures: int = 0
    not_before: datetime | None = None

    def due(self, now: datetime) -> bool:
        return self.not_before is None or now >= self.not_before

    def failed(self, now: datetime) -> timedelta:
        self.failures += 1
        wait = JOB_RETRIES.wait(self.failures)
        self.not_before = now + wait
        return wait

    def succeeded(self) -> None:
        self.failures, self.not_before = 0, None


@dataclass
class Worker:
    services: Services
    # Where the worker says what it did (the command prints to stderr).
    report: Callable[[str], None]
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.pruning = Schedule(PRUNE_EVERY)
        # Names this worker in the outbox rows it leases.
        self.owner = new_lease_owner()
        self._always_report = False
        self.jobs = [
            Job("retention", self.prune),
            # Until then a timed-out session, or one of an expired account, is refused at use.
            Job("session timeouts", self.end_timed_out_sessions),
            Job("expired accounts' sessions", self.end_expired_sessions),
            Job("console sessions", self.end_idle_console_sessions),
            Job("back-channel retries", self.retry_backchannel),
            Job("password reset runs", self.advance_password_resets),
            # Trouble-page requests before the outbox: the worker decides whom to write to
            # (idp.accounts.recovery), and the mail goes out in the same pass.
            Job("recovery requests", self.answer_recovery_requests),
            Job("mail", self.send_mail),
        ]

    def stop(self) -> None:
        """Finish the current job, then stop (safe from a signal handler or another thread)."""
        self.stopping.set()

    def run(self, *, once: bool = False) -> None:
        """Do what is due every ``IDP_MAIL_POLL_SECONDS``, until stopped (or once)."""
        while not self.stopping.is_set():
            self.run_once(always_report=once)
            if once:
                return
            self.stopping.wait(self.services.settings.mail_poll_seconds)

    def run_once(self, *, always_report: bool = False) -> None:
        """Run each job that is due once; a failing job is logged and waits, the others go on."""
        self._always_report = always_report
        for job in self.jobs:
            if self.stopping.is_set():
                return
            if not job.due(self.services.clock.now()):
                continue
            try:
                job.run()
            except Exception:
                self._recover()
                wait = job.failed(self.services.clock.now())
                log.exception(
                    "worker job %r failed (%d in a row); next try in %s", job.name, job.failures, wait
                )
                self.report(f"{job.name}: failed, trying again in {int(wait.total_seconds())}s")
            else:
                job.succeeded()

    def _recover(self) -> None:
        """Leave the failed job's transaction; a dropped connection is discarded with it."""
        session = self.services.session
        try:
            session.rollback()
        except DBAPIError:
            session.close()

    # --- the jobs ----------------------------------------------------------------------------
    def prune(self) -> None:
        built = self.services
        if not self.pruning.due(built.clock.now()):
            return
        try:
            pruned = prune(
                built.session, now=built.clock.now(), keep=timedelta(seconds=built.settings.retention_seconds)
            )
        except Exception:
            self.pruning.last = None  # not done: due again at the job's next try
            raise
        if pruned.total:
            self.report(f"pruned {pruned.describe()}")

    def end_timed_out_sessions(self) -> None:
        ended = self.end_sessions(self.services.sessions().end_timed_out(), "op_session.timed_out")
        if ended:
            self.report(f"ended {ended} timed-out session(s)")

    def end_expired_sessions(self) -> None:
        ended = self.end_sessions(self.services.sessions().end_expired(), "op_session.account_expired")
        if ended:
            self.report(f"ended {ended} session(s) of expired accounts")

    def end_idle_console_sessions(self) -> None:
        # Console sessions past their idle time are refused at use already; this removes the rows.
        if self.services.staff().end_idle():
            self.services.session.commit()

    def retry_backchannel(self) -> None:
        told, not_told = self.services.backchannel().retry_due()
        BACKCHANNEL_RETRIES.inc(told + not_told)
        if told or not_told:
            self.report(f"back-channel logout retries: delivered {told}, failed {not_told}")

    def advance_password_resets(self) -> None:
        # Reset-all runs (idp.admin.reset_all): a few batches a pass, each its own transaction.
        batches = self.services.password_resets().advance()
        if batches:
            self.report(f"password reset runs: advanced {batches} batch(es)")

    def answer_recovery_requests(self) -> None:
        answered = self.services.recovery().answer_requests()
        if answered:
            self.report(f"queued {answered} recovery mail(s)")

    def send_mail(self) -> None:
        built = self.services
        sent, failed = deliver_due(
            built.session,
            built.mail_transport,
            sender=built.settings.mail_from,
            clock=built.clock,
            owner=self.owner,
            should_stop=self.stopping.is_set,
        )
        if sent or failed or self._always_report:
            self.report(f"sent {sent}, failed {failed}")

    def end_sessions(self, ended: list[EndedSession], event: str) -> int:
        """Audit the ended sessions and tell their portals (Back-Channel Logout 1.0)."""
        built = self.services
        for gone in ended:
            audit(built.session, event, account_id=gone.account_id, sid=gone.sid)
        built.session.commit()
        built.backchannel().tell(gone for gone in ended if gone.client_ids)
        return len(ended)
