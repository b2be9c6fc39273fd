"""``idp worker`` that keeps going: a shared outbox sent exactly once, leases that outlast slow
mail servers, one Message-ID across attempts, RFC 5321 timeouts, a dropped database connection,
a failing job, SIGTERM. Real parts throughout: aiosmtpd, PostgreSQL and SQLite, threads and signals;
every wait is on an event the test or the server sets, never a guessed delay."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from idp.clock import FrozenClock
from idp.config import Settings
from idp.extensions import db
from idp.mail.delivery import SMTPTimeouts, SMTPTransport, claim
from idp.mail.models import OutboundEmail
from idp.oauth.logout import BackchannelLogout, post_form
from idp.oauth.models import BackchannelRetry
from idp.web.context import services
from idp.worker import Worker
from tests.conftest import settings_for_tests
from tests.database_drops import terminate
from tests.functional.locks import sqlite_writer_can_start
from tests.receiver import Receiver
from tests.smtp import free_port

# Workers in threads see only what was committed: no test transaction around them.
pytestmark = pytest.mark.commits

SENDER = "no-reply@district.example"
# Seconds; long enough that no loaded machine reaches them, as the server's replies wait on events.
SMTP_TIMEOUT = 30
WAIT = 60


class Server:
    """An aiosmtpd handler the test steers: it can hold replies, refuse, or wait for company."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.reset()

    def reset(self) -> None:
        self.received: list[EmailMessage] = []  # every message whose data came in
        self.accepted: list[EmailMessage] = []  # those answered 250
        self.changed = threading.Condition()
        self.data_in = threading.Event()  # the data of a held message has come in
        self.hold_final_reply = False
        self.stall_mail = False
        self.refusals = 0
        self.want_company = False
        self.on_data: Callable[[], None] | None = None
        self.in_data = 0
        self.most_in_data = 0
        self._go = asyncio.Event()
        self._company = asyncio.Event()

    def release(self) -> None:
        """Let held replies go."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._go.set)

    def wait_for(self, predicate: Callable[[], bool]) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout=WAIT), "the SMTP server did not get there"

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.stall_mail:
            await self._go.wait()
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.changed:
            self.received.append(message)
            self.changed.notify_all()
        self.in_data += 1
        self.most_in_data = max(self.most_in_data, self.in_data)
        try:
            if self.want_company:
                # The first conversation waits here until a second one reaches its data too.
                if self.in_data >= 2:
                    self._company.set()
                await asyncio.wait_for(self._company.wait(), WAIT)
            if self.on_data is not None:
                self.on_data()
            if self.hold_final_reply:
                self.data_in.set()
                await self._go.wait()
            if self.refusals:
                self.refusals -= 1
                return "451 4.3.0 Try again later"
            with self.changed:
                self.accepted.append(message)
                self.changed.notify_all()
            return "250 OK"
        finally:
            self.in_data -= 1


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Server, int]]:
    server, port = Server(), free_port()
    controller = Controller(server, hostname="127.0.0.1", port=port)
    controller.start()
    server.loop = controller.loop
    try:
        yield server, port
    finally:
        server.release()
        controller.stop()


@pytest.fixture
def server(smtp: tuple[Server, int]) -> Iterator[Server]:
    smtp[0].reset()
    yield smtp[0]
    smtp[0].release()  # nothing stays held for the next test


@pytest.fixture
def settings(database_url: str, keys_dir: Path, smtp: tuple[Server, int]) -> Settings:
    return settings_for_tests(
        database_url,
        keys_dir,
        smtp_url=f"smtp://127.0.0.1:{smtp[1]}",
        mail_from=SENDER,
        smtp_timeout_seconds=SMTP_TIMEOUT,
    )


def queue(count: int = 1) -> list[OutboundEmail]:
    outbox = services().outbox()
    rows = [
        outbox.queue(to=f"parent{n}@example.org", subject=f"Mail {n}", body="words", purpose="test")
        for n in range(count)
    ]
    db.session.commit()
    return rows


def rows() -> list[OutboundEmail]:
    db.session.expire_all()
    found = list(db.session.execute(select(OutboundEmail).order_by(OutboundEmail.subject)).scalars())
    db.session.commit()
    return found


@contextmanager
def worker_threads(app: Flask, count: int) -> Iterator[list[list[str]]]:
    """Run ``count`` workers, each in a thread with its own session, until the block ends."""
    reports: list[list[str]] = [[] for _ in range(count)]
    done = threading.Event()
    failures: list[BaseException] = []

    def work(lines: list[str]) -> None:
        try:
            with app.app_context():
                worker = Worker(services(), report=lines.append)
                try:
                    while not done.is_set():
                        worker.run_once()
                        done.wait(0.01)
                finally:
                    db.session.remove()
        except BaseException as error:  # the test reports it
            failures.append(error)

    threads = [threading.Thread(target=work, args=(lines,)) for lines in reports]
    for thread in threads:
        thread.start()
    try:
        yield reports
    finally:
        done.set()
        for thread in threads:
            thread.join(WAIT)
    assert failures == []
    assert not any(thread.is_alive() for thread in threads)


def sent_by(lines: list[str]) -> int:
    return sum(int(line.split()[1].rstrip(",")) for line in lines if line.startswith("sent "))


# --- several workers, one outbox ------------------------------------------------------------
def test_two_workers_send_each_mail_exactly_once(app: Flask, server: Server, clock: FrozenClock):
    queued = queue(12)
    # The first conversation holds its reply until a second one is under way: the workers share
    # the outbox while one of them is talking, so neither may hold a lock the other waits for.
    server.want_company = True

    with worker_threads(app, 2) as reports:
        server.wait_for(lambda: len(server.accepted) == 12)

    assert server.most_in_data == 2
    assert len(server.received) == 12  # nothing more after the workers stopped either
    copies = Counter(str(message["Message-ID"]) for message in server.accepted)
    assert copies == Counter({row.message_id: 1 for row in queued})
    assert all(sent_by(lines) >= 1 for lines in reports)
    assert sum(sent_by(lines) for lines in reports) == 12
    assert all(
        (row.attempts, row.lease_owner, row.leased_until) == (1, None, None) and row.sent_at for row in rows()
    )


def test_a_server_slower_than_the_old_timeout_gets_one_copy_while_another_worker_runs(
    app: Flask, server: Server, clock: FrozenClock
):
    (queued,) = queue(1)
    server.hold_final_reply = True
    first_lines: list[str] = []

    def first_worker() -> None:
        with app.app_context():
            Worker(services(), report=first_lines.append).run_once()
            db.session.remove()

    first = threading.Thread(target=first_worker)
    first.start()
    try:
        assert server.data_in.wait(WAIT)
        # The server thinks about its reply for as long as a conversation may last: the lease,
        # taken before the conversation, still keeps a second worker away.
        transport = services().mail_transport
        assert isinstance(transport, SMTPTransport)
        clock.advance(transport.longest_conversation)
        second_lines: list[str] = []
        second = Worker(services(), report=second_lines.append)
        second.run_once(always_report=True)
        assert second_lines == ["sent 0, failed 0"]
        (row,) = rows()
        assert row.sent_at is None and row.leased_until is not None and row.lease_owner is not None
    finally:
        server.release()
        first.join(WAIT)
    assert first_lines == ["sent 1, failed 0"]

    clock.advance(timedelta(hours=1))  # well past the lease: the message is sent, so it stays sent
    second.run_once(always_report=True)
    assert second_lines[-1] == "sent 0, failed 0"
    assert [str(m["Message-ID"]) for m in server.received] == [queued.message_id]
    (row,) = rows()
    assert row.sent_at is not None and row.attempts == 1 and row.lease_owner is None


def test_a_message_leased_by_a_worker_that_died_goes_after_the_lease_with_its_message_id(
    app: Flask, server: Server, clock: FrozenClock
):
    (queued,) = queue(1)
    # A worker took the message, then its process was killed: it never records an outcome.
    claim(db.session, clock=clock, owner="host:4242:dead", lease=timedelta(minutes=10))
    lines: list[str] = []
    worker = Worker(services(), report=lines.append)

    worker.run_once(always_report=True)
    clock.advance(timedelta(minutes=10) - timedelta(seconds=1))
    worker.run_once(always_report=True)
    assert server.received == []
    clock.advance(timedelta(seconds=1))
    worker.run_once(always_report=True)

    assert lines == ["sent 0, failed 0", "sent 0, failed 0", "sent 1, failed 0"]
    assert [str(m["Message-ID"]) for m in server.accepted] == [queued.message_id]


def test_the_message_id_is_the_same_on_every_attempt(app: Flask, server: Server, clock: FrozenClock):
    (queued,) = queue(1)
    server.refusals = 2
    lines: list[str] = []
    worker = Worker(services(), report=lines.append)

    for wait in (timedelta(minutes=1), timedelta(minutes=2), timedelta(0)):
        worker.run_once(always_report=True)
        clock.advance(wait)

    assert lines == ["sent 0, failed 1", "sent 0, failed 1", "sent 1, failed 0"]
    assert queued.message_id.endswith("@district.example>")
    assert [str(m["Message-ID"]) for m in server.received] == [queued.message_id] * 3
    assert len(server.accepted) == 1


def test_two_workers_end_a_timed_out_session_once(
    app: Flask, clock: FrozenClock, settings: Settings, make_account: Callable[..., Any]
):
    started = services().sessions().start(make_account(), ip_address=None, user_agent=None)
    db.session.commit()
    clock.advance(timedelta(seconds=settings.session_idle_seconds + 1))
    # One worker is ending it and has not committed yet when another looks for timed-out sessions.
    (ended,) = services().sessions().end_timed_out()
    other: list[Any] = []

    def other_worker() -> None:
        with app.app_context():
            other.extend(services().sessions().end_timed_out())
            db.session.commit()
            db.session.remove()

    looking = threading.Thread(target=other_worker)
    looking.start()
    # On PostgreSQL it skips the row the first one holds (SKIP LOCKED); on SQLite it waits for
    # the first one's commit (one writer at a time) and finds the session gone.
    looking.join(WAIT if db.engine.dialect.name == "postgresql" else 0)
    db.session.commit()
    looking.join(WAIT)

    assert ended.sid == started.sid
    assert other == []


def another_writer_can_start(database_url: str, retry_id: str) -> bool:
    """Whether another connection could change the retry's row right now, without waiting."""
    if database_url.startswith("sqlite"):
        return sqlite_writer_can_start(database_url)
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SET lock_timeout = '1ms'"))
            conn.execute(text("SELECT id FROM backchannel_retry WHERE id = :id FOR UPDATE"), {"id": retry_id})
            conn.rollback()
        return True
    except DBAPIError:
        return False
    finally:
        engine.dispose()


def test_no_lock_is_held_while_a_portal_answers_a_back_channel_retry(
    app: Flask,
    clock: FrozenClock,
    database_url: str,
    make_account: Callable[..., Any],
    make_client: Callable[..., Any],
    receiver: Receiver,
):
    portal = make_client(backchannel_logout_uri=receiver.url)
    retry = BackchannelRetry(
        client_id=portal.client_id,
        account_id=make_account().id,
        sid="s" * 22,
        next_attempt_at=clock.now(),
        attempts=1,
        last_error="HTTP 503",
    )
    db.session.add(retry)
    db.session.commit()
    seen: list[bool] = []

    def observed_post(uri: str, body: bytes, timeout: float) -> int:
        seen.append(another_writer_can_start(database_url, retry.id))
        return post_form(uri, body, timeout)

    built = services()
    backchannel = BackchannelLogout(
        db.session,
        keys=built.keys,
        clock=clock,
        issuer=built.issuer,
        policy=built.token_policy,
        poster=observed_post,
    )

    assert backchannel.retry_due() == (1, 0)
    assert seen == [True]
    assert len(receiver.received) == 1


# --- RFC 5321 timeouts ------------------------------------------------------------------------
def a_message() -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = SENDER, "dana@example.org", "Hello"
    message["Message-ID"] = "<timeouts@district.example>"
    message.set_content("words")
    return message


def test_the_reply_after_the_data_is_awaited_longer_than_any_command(
    server: Server, smtp: tuple[Server, int]
):
    # The reply after the data gets its own, longer wait (RFC 5321 4.5.3.2.6): a server that
    # takes longer than the command timeout to accept is not given up on (and sent it again).
    timeouts = SMTPTimeouts(command=0.5, final=WAIT, before_data=WAIT)
    transport = SMTPTransport(f"smtp://127.0.0.1:{smtp[1]}", timeouts)
    server.hold_final_reply = True
    sending = threading.Thread(target=transport.send, args=(a_message(),))
    sending.start()
    assert server.data_in.wait(WAIT)
    # Longer than the command timeout; a slower machine only waits longer, never shorter.
    threading.Event().wait(2 * timeouts.command)
    server.release()
    sending.join(WAIT)
    assert [str(m["Message-ID"]) for m in server.accepted] == ["<timeouts@district.example>"]


def test_a_server_silent_before_the_data_is_given_up_at_the_command_timeout(
    server: Server, smtp: tuple[Server, int]
):
    transport = SMTPTransport(f"smtp://127.0.0.1:{smtp[1]}", SMTPTimeouts(command=0.2, final=WAIT))
    server.stall_mail = True

    with pytest.raises(Exception, match="Connection unexpectedly closed: timed out"):
        transport.send(a_message())
    assert server.received == []


def test_the_timeouts_follow_rfc_5321_and_idp_smtp_timeout_seconds(app: Flask):
    transport = services().mail_transport
    assert isinstance(transport, SMTPTransport)
    assert transport.timeouts == SMTPTimeouts(command=SMTP_TIMEOUT)

    default = SMTPTimeouts()
    assert (Settings().smtp_timeout_seconds, default.command, default.final_reply) == (300, 300, 600)
    # Everything before the data, then the whole wait for the final reply, then QUIT.
    assert default.longest_conversation == timedelta(seconds=900 + 600 + 10)


# --- failures ---------------------------------------------------------------------------------
@pytest.fixture
def postgresql(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("a SQLite file has no server to drop the connection")


def test_a_worker_whose_database_connection_is_terminated_goes_on(
    app: Flask, server: Server, clock: FrozenClock, postgresql: None, caplog: pytest.LogCaptureFixture
):
    queue(1)
    lines: list[str] = []
    worker = Worker(services(), report=lines.append)
    # The worker's session is inside a transaction when PostgreSQL ends its connection.
    pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    terminate(pid)

    with caplog.at_level(logging.ERROR, logger="idp.worker"):
        worker.run_once()

    # The job that met the dead connection failed and waits; the others ran on a new connection.
    assert lines == ["retention: failed, trying again in 5s", "sent 1, failed 0"]
    (record,) = caplog.records
    assert "worker job 'retention' failed" in record.getMessage()
    assert record.exc_info is not None and "OperationalError" in repr(record.exc_info[1])
    assert len(server.accepted) == 1

    clock.advance(timedelta(seconds=5))
    worker.run_once()
    assert all(job.failures == 0 for job in worker.jobs)
    assert db.session.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    db.session.commit()


def test_a_mail_the_server_accepted_is_recorded_through_a_dropped_connection_and_not_sent_again(
    app: Flask, server: Server, clock: FrozenClock, postgresql: None, caplog: pytest.LogCaptureFixture
):
    (queued,) = queue(1)
    dropped: list[int] = []

    def drop_at_the_record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # PostgreSQL goes away just as the worker writes down that the server took the message.
        if not dropped and statement.startswith("UPDATE outbound_email SET") and "sent_at=" in statement:
            dropped.append(conn.connection.dbapi_connection.info.backend_pid)
            terminate(dropped[0])

    lines: list[str] = []
    worker = Worker(services(), report=lines.append)
    event.listen(db.engine, "before_cursor_execute", drop_at_the_record)
    try:
        with caplog.at_level(logging.WARNING, logger="idp.mail.delivery"):
            worker.run_once()
    finally:
        event.remove(db.engine, "before_cursor_execute", drop_at_the_record)

    assert len(dropped) == 1
    assert lines == ["sent 1, failed 0"]
    assert any("recording mail" in record.getMessage() for record in caplog.records)
    (row,) = rows()
    assert row.sent_at is not None and row.lease_owner is None
    clock.advance(timedelta(hours=1))  # past any lease
    worker.run_once(always_report=True)
    assert lines[-1] == "sent 0, failed 0"
    assert [str(m["Message-ID"]) for m in server.received] == [queued.message_id]


def test_a_job_that_fails_waits_longer_each_time_and_the_others_go_on(
    app: Flask, server: Server, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
):
    queue(1)
    lines: list[str] = []
    worker = Worker(services(), report=lines.append)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the back-channel retries are broken")

    monkeypatch.setattr(BackchannelLogout, "retry_due", broken)
    worker.run_once()
    clock.advance(timedelta(seconds=5))
    worker.run_once()
    clock.advance(timedelta(seconds=9))
    worker.run_once()  # not yet: the second wait is 10 s
    clock.advance(timedelta(seconds=1))
    worker.run_once()

    assert lines == [
        "back-channel retries: failed, trying again in 5s",
        "sent 1, failed 0",
        "back-channel retries: failed, trying again in 10s",
        "back-channel retries: failed, trying again in 20s",
    ]
    assert len(server.accepted) == 1


@pytest.mark.timeout(WAIT)
def test_sigterm_during_a_mail_finishes_it_and_the_worker_exits(
    app: Flask, server: Server, clock: FrozenClock
):
    queue(2)
    # The server signals the worker while the first message's data is in, before it answers.
    server.on_data = lambda: os.kill(os.getpid(), signal.SIGTERM)
    unhandled: list[int] = []
    # Stands in for the default action (the end of pytest) should the worker not take SIGTERM.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: unhandled.append(signum))
    try:
        result = app.test_cli_runner().invoke(args=["worker"])
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert result.exit_code == 0, result.output
    assert unhandled == []
    assert "SIGTERM: stopping after the current job" in result.output
    (accepted,) = server.accepted
    done, waiting = sorted(rows(), key=lambda row: row.sent_at is None)
    assert (done.message_id, done.lease_owner) == (str(accepted["Message-ID"]), None)
    assert done.sent_at is not None
    assert (waiting.sent_at, waiting.attempts, waiting.lease_owner) == (None, 0, None)
