"""Everything ``idp worker`` runs: mail, recovery answers, back-channel retries, session timeouts,
retention. Any number of workers may run at once: each job takes its rows with SKIP LOCKED."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from idp.accounts.sessions import EndedSession
from idp.audit import audit
from idp.mail.delivery import deliver_due
from idp.services import Services
from idp.worker.retention import Schedule, prune

# Retention is counted in days: an hourly pass keeps each batch of deletes small, and passes
# more often would only scan the same tables again (idp.worker.retention).
PRUNE_EVERY = timedelta(hours=1)


@dataclass
class Worker:
    services: Services
    # Where the worker says what it did (the command prints to stderr).
    report: Callable[[str], None]

    def __post_init__(self) -> None:
        self.pruning = Schedule(PRUNE_EVERY)

    def run(self, *, once: bool = False) -> None:
        """Do what is due every ``IDP_MAIL_POLL_SECONDS``, until stopped (or once)."""
        while True:
            self.run_once(always_report=once)
            if once:
                return
            time.sleep(self.services.settings.mail_poll_seconds)

    def run_once(self, *, always_report: bool = False) -> None:
        built = self.services
        if self.pruning.due(built.clock.now()):
            pruned = prune(
                built.session, now=built.clock.now(), keep=timedelta(seconds=built.settings.retention_seconds)
            )
            if pruned.total:
                self.report(f"pruned {pruned.describe()}")
        # Until then a timed-out session, or one of an expired account, is refused at use.
        ended = self.end_sessions(built.sessions().end_timed_out(), "op_session.timed_out")
        if ended:
            self.report(f"ended {ended} timed-out session(s)")
        ended = self.end_sessions(built.sessions().end_expired(), "op_session.account_expired")
        if ended:
            self.report(f"ended {ended} session(s) of expired accounts")
        # Console sessions past their idle time are refused at use already; this removes the rows.
        if built.staff().end_idle():
            built.session.commit()
        told, not_told = built.backchannel().retry_due()
        if told or not_told:
            self.report(f"back-channel logout retries: delivered {told}, failed {not_told}")
        # Reset-all runs (idp.admin.reset_all): a few batches a pass, each its own transaction.
        batches = built.password_resets().advance()
        if batches:
            self.report(f"password reset runs: advanced {batches} batch(es)")
        # Trouble-page requests before the outbox: the worker decides whom to write to
        # (idp.accounts.recovery), and the mail goes out in the same pass.
        answered = built.recovery().answer_requests()
        if answered:
            self.report(f"queued {answered} recovery mail(s)")
        sent, failed = deliver_due(
            built.session, built.mail_transport, sender=built.settings.mail_from, clock=built.clock
        )
        if sent or failed or always_report:
            self.report(f"sent {sent}, failed {failed}")

    def end_sessions(self, ended: list[EndedSession], event: str) -> int:
        """Audit the ended sessions and tell their portals (Back-Channel Logout 1.0)."""
        built = self.services
        for gone in ended:
            audit(built.session, event, account_id=gone.account_id, sid=gone.sid)
        built.session.commit()
        built.backchannel().tell(gone for gone in ended if gone.client_ids)
        return len(ended)
