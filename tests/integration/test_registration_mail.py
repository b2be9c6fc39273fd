"""The outbox the registration writes to: delivery to a real SMTP server (aiosmtpd) and to files, retries."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from idp.clock import FrozenClock
from idp.extensions import db
from idp.mail.delivery import FileTransport, SMTPTimeouts, SMTPTransport, deliver_due, transport_for
from idp.mail.models import OutboundEmail
from idp.mail.outbox import Outbox
from idp.web.context import services


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def queue(subject: str = "Verify your email address") -> OutboundEmail:
    row = Outbox(db.session, clock=services().clock).queue(
        to="dana@example.org",
        subject=subject,
        body="Open http://localhost/verify/abc",
        purpose="email_verification",
    )
    db.session.commit()
    return row


def test_due_mail_reaches_a_real_smtp_server_once(app, smtp_server):
    inbox, port = smtp_server
    queue()
    transport = transport_for(f"smtp://127.0.0.1:{port}", Path("/nonexistent"))

    assert deliver_due(db.session, transport, sender="no-reply@district.example", clock=services().clock) == (
        1,
        0,
    )
    assert deliver_due(db.session, transport, sender="no-reply@district.example", clock=services().clock) == (
        0,
        0,
    )

    (message,) = inbox.messages
    assert message["To"] == "dana@example.org"
    assert message["From"] == "no-reply@district.example"
    assert "http://localhost/verify/abc" in message.get_content()
    assert db.session.execute(select(OutboundEmail.sent_at)).scalar_one() is not None
    db.session.commit()


def test_a_failed_delivery_is_retried_after_a_backoff(app, clock: FrozenClock):
    queue()
    unreachable = SMTPTransport(f"smtp://127.0.0.1:{free_port()}", SMTPTimeouts(command=2))

    assert deliver_due(db.session, unreachable, sender="x@example.org", clock=clock) == (0, 1)
    row = db.session.execute(select(OutboundEmail)).scalar_one()
    assert row.attempts == 1 and row.sent_at is None and row.last_error
    assert row.next_attempt_at == clock.now() + timedelta(minutes=1)
    db.session.commit()
    # Not due yet: nothing is tried.
    assert deliver_due(db.session, unreachable, sender="x@example.org", clock=clock) == (0, 0)


def test_file_transport_writes_one_eml_per_message(app, tmp_path: Path):
    queue("first")
    queue("second")

    sent = deliver_due(db.session, FileTransport(tmp_path), sender="x@example.org", clock=services().clock)

    assert sent == (2, 0)
    subjects = sorted(
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Subject"]
        for p in tmp_path.glob("*.eml")
    )
    assert subjects == ["first", "second"]
    assert not list(tmp_path.glob(".*.part"))


def test_unknown_smtp_scheme_is_refused():
    with pytest.raises(ValueError, match="unknown scheme"):
        transport_for("ftp://mail.example.org", Path("instance"))
