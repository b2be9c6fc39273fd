"""Deliver due outbox rows: to .eml files (development) or an SMTP server, with retries and backoff."""

from __future__ import annotations

import logging
import os
import secrets
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import unquote, urlsplit

from sqlalchemy import ColumnElement, CursorResult, Update, or_, select, update
from sqlalchemy.exc import DBAPIError

from idp.clock import Clock
from idp.db import DbSession
from idp.mail.models import OutboundEmail
from idp.metrics import MAILS
from idp.policy import MAIL_RETRIES

if TYPE_CHECKING:
    from typing_extensions import Buffer  # smtplib's type for what it sends

log = logging.getLogger(__name__)

# A row that runs out of attempts (MAIL_RETRIES) stays in the table, with its ``last_error``, and
# is no longer tried.
MAX_ATTEMPTS = MAIL_RETRIES.attempts
# What a row's body reads once it is sent or given up (the column is NOT NULL).
ERASED_BODY = ""


class Transport(Protocol):
    @property
    def longest_conversation(self) -> timedelta:
        """The longest a ``send`` may take: a worker's lease on a message outlasts it (``deliver_due``)."""
        ...

    def send(self, message: EmailMessage) -> None: ...


class FileTransport:
    """Write each message as an .eml file: the default outside production, and ``file://`` URLs."""

    longest_conversation = timedelta(minutes=1)

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message: EmailMessage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = str(message["Message-ID"]).strip("<>").replace("@", "_").replace("/", "_")
        # Written under a temporary name, then renamed: a reader never sees half a message.
        final = self.folder / f"{name}.eml"
        partial = self.folder / f".{name}.part"
        partial.write_bytes(message.as_bytes())
        os.replace(partial, final)


@dataclass(frozen=True)
class SMTPTimeouts:
    """How long the client waits, after RFC 5321 4.5.3.2: minutes, not seconds.

    ``command`` (``IDP_SMTP_TIMEOUT_SECONDS``, 5 minutes by default) bounds the greeting and every
    command's reply, the 5 minutes the RFC gives the greeting, MAIL and RCPT (more than its 2 for
    DATA and 3 for each block of data). Everything before the end of the data must fit in
    ``before_data_end`` (three of them), so that a server that answers each step just in time
    cannot hold a message for ever. The reply after the data's end gets ``final_reply`` in full,
    the RFC's 10 minutes: giving up on it early is what makes a server that accepted a message
    receive it again (4.5.3.2.6). QUIT, after the message is accepted, waits briefly and its
    failure changes nothing.
    """

    command: float = 300.0
    # Twice and three times ``command`` unless given (tests give them apart).
    final: float | None = None
    before_data: float | None = None

    @property
    def before_data_end(self) -> float:
        return self.before_data if self.before_data is not None else 3 * self.command

    @property
    def final_reply(self) -> float:
        return self.final if self.final is not None else 2 * self.command

    @property
    def quit(self) -> float:
        return min(self.command, 10.0)

    @property
    def longest_conversation(self) -> timedelta:
        return timedelta(seconds=self.before_data_end + self.final_reply + self.quit)


class _Timed(smtplib.SMTP):
    """smtplib's client, with each wait bounded as ``SMTPTimeouts`` says."""

    timeouts: SMTPTimeouts
    deadline: float
    _final_next: bool

    def _start_clock(self, timeouts: SMTPTimeouts) -> None:
        self.timeouts = timeouts
        self.deadline = time.monotonic() + timeouts.before_data_end
        self._final_next = False

    def _bound(self, seconds: float) -> None:
        if self.sock is None:
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.close()
            raise smtplib.SMTPServerDisconnected("the SMTP conversation took too long")
        self.sock.settimeout(min(seconds, left))

    def send(self, s: Buffer | str) -> None:
        self._bound(self.timeouts.command)
        # smtplib sends commands as str and the message (ending "<CRLF>.<CRLF>") as bytes.
        self._final_next = isinstance(s, bytes) and s.endswith(b"\r\n.\r\n")
        super().send(s)

    def getreply(self) -> tuple[int, bytes]:
        if self._final_next and self.sock is not None:
            self._final_next = False
            self.sock.settimeout(self.timeouts.final_reply)
        else:
            self._bound(self.timeouts.command)
        return super().getreply()

    def quit_quietly(self) -> None:
        """Say QUIT, briefly: the message is accepted (or refused) already, whatever it answers."""
        self.deadline = time.monotonic() + self.timeouts.quit
        try:
            self.docmd("QUIT")
        except (OSError, smtplib.SMTPException):
            pass
        finally:
            self.close()


class _Plain(_Timed):
    def __init__(self, host: str, port: int, timeouts: SMTPTimeouts) -> None:
        self._start_clock(timeouts)
        super().__init__(host, port, timeout=timeouts.command)


class _ImplicitTLS(_Timed, smtplib.SMTP_SSL):
    def __init__(self, host: str, port: int, timeouts: SMTPTimeouts, context: ssl.SSLContext) -> None:
        self._start_clock(timeouts)
        smtplib.SMTP_SSL.__init__(self, host, port, timeout=timeouts.command, context=context)


class SMTPTransport:
    """``smtp://`` (port 25), ``smtp+starttls://`` (587) and ``smtps://`` (465), as the README says."""

    def __init__(
        self, url: str, timeouts: SMTPTimeouts | None = None, context: ssl.SSLContext | None = None
    ) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname or "localhost"
        default_port = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}[self.scheme]
        self.port = parts.port or default_port
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeouts = timeouts or SMTPTimeouts()
        self.context = context

    @property
    def longest_conversation(self) -> timedelta:
        return self.timeouts.longest_conversation

    def send(self, message: EmailMessage) -> None:
        """Hand ``message`` to the server; return once it accepted it, raise if it did not."""
        # The default context verifies the server's certificate and name against the system's
        # CAs (or SSL_CERT_FILE); tests pass a context that trusts their own CA.
        context = self.context or ssl.create_default_context()
        smtp: _Timed
        if self.scheme == "smtps":
            smtp = _ImplicitTLS(self.host, self.port, self.timeouts, context)
        else:
            smtp = _Plain(self.host, self.port, self.timeouts)
        try:
            if self.scheme == "smtp+starttls":
                smtp.starttls(context=context)
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)
        finally:
            # Not ``with smtp``: its QUIT raises on an odd answer, and a message the server has
            # accepted would then count as failed and go again.
            smtp.quit_quietly()


def transport_for(
    smtp_url: str | None, instance_path: Path, timeouts: SMTPTimeouts | None = None
) -> Transport:
    """Return the transport ``IDP_SMTP_URL`` names; unset means .eml files in ``instance/outbox``."""
    if not smtp_url:
        return FileTransport(instance_path / "outbox")
    parts = urlsplit(smtp_url)
    if parts.scheme == "file":
        return FileTransport(Path(unquote(parts.path)))
    if parts.scheme in {"smtp", "smtp+starttls", "smtps"}:
        return SMTPTransport(smtp_url, timeouts)
    raise ValueError(f"IDP_SMTP_URL: unknown scheme {parts.scheme!r}")


def message_domain(sender: str) -> str:
    """The right-hand side of the Message-IDs made for mail from ``sender``."""
    return sender.rpartition("@")[2] or "localhost"


def as_email(row: OutboundEmail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = row.to_address
    message["Subject"] = row.subject
    message["Date"] = format_datetime(row.created_at)
    # The same on every attempt: a receiver that got the message already can tell a copy.
    message["Message-ID"] = row.message_id
    message.set_content(row.body_text)
    if row.body_html is not None:
        # multipart/alternative: mail programs show the last part they can, the HTML one.
        message.add_alternative(row.body_html, subtype="html")
    return message


def new_lease_owner() -> str:
    """Name a worker in the rows it leases: host, process and a random part (threads differ)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"[:64]


# A lease outlasts the transport's longest conversation by this much, so that a worker still
# talking to a slow server always records the outcome before another worker may take the message.
LEASE_MARGIN = timedelta(minutes=1)
# Recording an accepted message is retried over a dropped connection: waits in seconds.
RECORD_WAITS = (0.5, 1.0, 2.0, 4.0)


def deliver_due(
    session: DbSession,
    transport: Transport,
    *,
    sender: str,
    clock: Clock,
    limit: int = 100,
    owner: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[int, int]:
    """Send what is due, one message at a time; return (sent, failed).

    Each message is taken with a lease in a short transaction (``claim``), sent with no
    transaction open, and its outcome recorded in another short transaction; so any number of
    workers share the outbox, none holds a row lock while a mail server thinks, and a message
    the server accepted is never sent again. ``should_stop`` is asked between messages.
    """
    owner = owner or new_lease_owner()
    lease = transport.longest_conversation + LEASE_MARGIN
    sent = failed = 0
    for _ in range(limit):
        if should_stop():
            break
        row = claim(session, clock=clock, owner=owner, lease=lease)
        if row is None:
            break
        try:
            transport.send(as_email(row, sender))
        # Any error, not only the network's and SMTP's: one bad row must not stop the others.
        except Exception as error:
            failed += 1
            _record_failure(session, row, owner, error, now=clock.now())
        else:
            sent += 1
            _record_with_retries(session, _sent(row, owner, now=clock.now()), row.id)
            MAILS.labels(outcome="sent").inc()
    return sent, failed


def _due(now: datetime) -> list[ColumnElement[bool]]:
    return [
        OutboundEmail.sent_at.is_(None),
        OutboundEmail.next_attempt_at <= now,
        OutboundEmail.attempts < MAX_ATTEMPTS,
        or_(OutboundEmail.leased_until.is_(None), OutboundEmail.leased_until <= now),
    ]


def claim(session: DbSession, *, clock: Clock, owner: str, lease: timedelta) -> OutboundEmail | None:
    """Lease the next due message to ``owner`` for ``lease``, and commit; None when nothing is due.

    One UPDATE: on PostgreSQL its subquery skips rows another worker is claiming right now
    (SKIP LOCKED), and the lease keeps them away afterwards; SQLite runs one writer at a time
    (``BEGIN IMMEDIATE``, idp.db), so the WHERE alone decides.
    """
    now = clock.now()
    next_due = (
        select(OutboundEmail.id)
        .where(*_due(now))
        .order_by(OutboundEmail.next_attempt_at, OutboundEmail.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    row = session.execute(
        update(OutboundEmail)
        .where(OutboundEmail.id == next_due, *_due(now))
        .values(leased_until=now + lease, lease_owner=owner)
        .returning(OutboundEmail),
        # A row met in an earlier attempt of this session is read afresh, not taken from memory.
        execution_options={"populate_existing": True},
    ).scalar_one_or_none()
    session.commit()
    return row


def _sent(row: OutboundEmail, owner: str, *, now: datetime) -> Update:
    return (
        update(OutboundEmail)
        .where(OutboundEmail.id == row.id, OutboundEmail.lease_owner == owner)
        .values(
            sent_at=now,
            attempts=row.attempts + 1,
            body_text=ERASED_BODY,
            body_html=None,
            leased_until=None,
            lease_owner=None,
        )
    )


def _record_failure(
    session: DbSession, row: OutboundEmail, owner: str, error: Exception, *, now: datetime
) -> None:
    attempts = row.attempts + 1
    last_error = f"{type(error).__name__}: {error}"[:500]
    values: dict[str, object] = {
        "attempts": attempts,
        "last_error": last_error,
        "next_attempt_at": now + MAIL_RETRIES.wait(attempts),
        "leased_until": None,
        "lease_owner": None,
    }
    if attempts >= MAX_ATTEMPTS:
        values.update(body_text=ERASED_BODY, body_html=None)
        MAILS.labels(outcome="failed").inc()
        log.error(
            "mail %s to %s given up after %d attempts: %s", row.id, row.to_address, attempts, last_error
        )
    else:
        MAILS.labels(outcome="retried").inc()
        log.warning("mail %s to %s failed: %s", row.id, row.to_address, last_error)
    statement = (
        update(OutboundEmail)
        .where(OutboundEmail.id == row.id, OutboundEmail.lease_owner == owner)
        .values(**values)
    )
    # Not retried: if this is lost, the lease ends and the message is simply tried again.
    _record(session, statement, row.id)


def _record_with_retries(session: DbSession, statement: Update, mail_id: str) -> None:
    """Record that the server accepted mail ``mail_id``, through a dropped connection or two: until
    the record is written, the message would be sent again once its lease ends."""
    for wait in (*RECORD_WAITS, None):
        try:
            _record(session, statement, mail_id)
            return
        except DBAPIError:
            # The rollback expires every loaded row: from here on only ``mail_id`` is used.
            _roll_back(session)
            if wait is None:
                raise
            log.warning("recording mail %s as sent failed; trying again in %ss", mail_id, wait, exc_info=True)
            time.sleep(wait)


def _record(session: DbSession, statement: Update, mail_id: str) -> None:
    # The row in memory is updated alike (SQLAlchemy's "evaluate"): what callers read is current.
    result = cast(CursorResult[Any], session.execute(statement))
    if result.rowcount != 1:
        # Only when the lease ended before the conversation did, which its length rules out.
        log.error("mail %s: lease lost before its outcome was recorded", mail_id)
    session.commit()


def _roll_back(session: DbSession) -> None:
    try:
        session.rollback()
    except DBAPIError:
        session.close()


def erase_body(row: OutboundEmail) -> None:
    """Drop the words of a message that will not be sent again, keeping who, what and when.

    Bodies carry reset and verification links and students' names: the outbox holds them only
    while the message may still go out, so a copy of the database has no usable link in it.
    """
    row.body_text = ERASED_BODY
    row.body_html = None
