"""A real SMTP server in the test process (aiosmtpd) and a mailbox to read what it received."""

from __future__ import annotations

import email
import email.policy
import logging
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

# aiosmtpd logs every connection at INFO from its own thread, between tests too: the provider's
# log (INFO, idp.logs) would print them all.
logging.getLogger("mail.log").setLevel(logging.WARNING)


class Inbox:
    """What the server received, as parsed messages; safe to read while it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if m["To"] == address]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "the message has no plain-text part"
    return str(part.get_content())


def link_in(message: EmailMessage, prefix: str) -> str:
    """Return the first URL in the plain-text body that starts with ``prefix``."""
    match = re.search(re.escape(prefix) + r"\S+", text_of(message))
    assert match, f"no link starting {prefix!r} in:\n{text_of(message)}"
    return match.group(0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def smtp_server(port: int | None = None, **controller_options: Any) -> Iterator[tuple[Inbox, int]]:
    """Run aiosmtpd on 127.0.0.1 (on ``port`` if given) until the block ends."""
    inbox = Inbox()
    port = port or free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **controller_options)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
