"""Deliver due outbox rows: to .eml files (development) or an SMTP server, with retries and backoff."""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from sqlalchemy import select

from idp.clock import Clock
from idp.db import DbSession
from idp.mail.models import OutboundEmail
from idp.policy import MAIL_RETRIES

log = logging.getLogger(__name__)

# A row that runs out of attempts (MAIL_RETRIES) stays in the table, with its ``last_error``, and
# is no longer tried.
MAX_ATTEMPTS = MAIL_RETRIES.attempts
# What a row's body reads once it is sent or given up (the column is NOT NULL).
ERASED_BODY = ""


class Transport(Protocol):
    def send(self, message: EmailMessage) -> None: ...


class FileTransport:
    """Write each message as an .eml file: the default outside production, and ``file://`` URLs."""

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


class SMTPTransport:
    """``smtp://`` (port 25), ``smtp+starttls://`` (587) and ``smtps://`` (465), as the README says."""

    def __init__(self, url: str, timeout: float = 10.0, context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname or "localhost"
        default_port = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}[self.scheme]
        self.port = parts.port or default_port
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self.context = context

    def send(self, message: EmailMessage) -> None:
        # The default context verifies the server's certificate and name against the system's
        # CAs (or SSL_CERT_FILE); tests pass a context that trusts their own CA.
        context = self.context or ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.scheme == "smtps":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.scheme == "smtp+starttls":
                smtp.starttls(context=context)
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)


def transport_for(smtp_url: str | None, instance_path: Path) -> Transport:
    """Return the transport ``IDP_SMTP_URL`` names; unset means .eml files in ``instance/outbox``."""
    if not smtp_url:
        return FileTransport(instance_path / "outbox")
    parts = urlsplit(smtp_url)
    if parts.scheme == "file":
        return FileTransport(Path(unquote(parts.path)))
    if parts.scheme in {"smtp", "smtp+starttls", "smtps"}:
        return SMTPTransport(smtp_url)
    raise ValueError(f"IDP_SMTP_URL: unknown scheme {parts.scheme!r}")


def as_email(row: OutboundEmail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = row.to_address
    message["Subject"] = row.subject
    message["Date"] = format_datetime(row.created_at)
    message["Message-ID"] = make_msgid(idstring=row.id, domain=sender.rpartition("@")[2] or "localhost")
    message.set_content(row.body_text)
    if row.body_html is not None:
        # multipart/alternative: mail programs show the last part they can, the HTML one.
        message.add_alternative(row.body_html, subtype="html")
    return message


def deliver_due(
    session: DbSession,
    transport: Transport,
    *,
    sender: str,
    clock: Clock,
    limit: int = 100,
) -> tuple[int, int]:
    """Send what is due, committing after each message; return (sent, failed)."""
    sent = failed = 0
    for _ in range(limit):
        now = clock.now()
        # SKIP LOCKED: several workers share the outbox without sending a message twice (PostgreSQL).
        row = session.execute(
            select(OutboundEmail)
            .where(
                OutboundEmail.sent_at.is_(None),
                OutboundEmail.next_attempt_at <= now,
                OutboundEmail.attempts < MAX_ATTEMPTS,
            )
            .order_by(OutboundEmail.next_attempt_at, OutboundEmail.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).scalar_one_or_none()
        if row is None:
            session.rollback()
            break
        try:
            transport.send(as_email(row, sender))
        # Any error, not only the network's and SMTP's: one bad row must not stop the others.
        except Exception as error:
            row.attempts += 1
            row.last_error = f"{type(error).__name__}: {error}"[:500]
            row.next_attempt_at = now + MAIL_RETRIES.wait(row.attempts)
            failed += 1
            if row.attempts >= MAX_ATTEMPTS:
                erase_body(row)
                log.error(
                    "mail %s to %s given up after %d attempts: %s",
                    row.id,
                    row.to_address,
                    row.attempts,
                    row.last_error,
                )
            else:
                log.warning("mail %s to %s failed: %s", row.id, row.to_address, row.last_error)
        else:
            row.attempts += 1
            row.sent_at = now
            erase_body(row)
            sent += 1
        session.commit()
    return sent, failed


def erase_body(row: OutboundEmail) -> None:
    """Drop the words of a message that will not be sent again, keeping who, what and when.

    Bodies carry reset and verification links and students' names: the outbox holds them only
    while the message may still go out, so a copy of the database has no usable link in it.
    """
    row.body_text = ERASED_BODY
    row.body_html = None
