"""SMTP delivery against real aiosmtpd servers: STARTTLS, implicit TLS, AUTH, outages and retries."""

from __future__ import annotations

import email
import email.message
import email.policy
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from flask import Flask
from sqlalchemy import select

from idp.accounts.models import Account
from idp.clock import FrozenClock
from idp.config import Settings
from idp.extensions import db
from idp.mail.delivery import MAX_ATTEMPTS, SMTPTransport, deliver_due
from idp.mail.models import OutboundEmail
from idp.mail.outbox import Outbox
from idp.policy import MAIL_RETRIES
from idp.web.context import services
from tests.conftest import settings_for_tests
from tests.tls import certificate_pem, name, new_root_ca, private_pem

# Percent-encoded in the URL, as IDP_SMTP_URL wants them: a space, "@", ":", "/" and "%".
SMTP_USER = "mail user@district.example"
SMTP_PASSWORD = "p@ss:w/rd%42"
SMTP_USERINFO = "mail%20user%40district.example:p%40ss%3Aw%2Frd%2542"
SENDER = "no-reply@district.example"


# --- a test CA and a server certificate signed by it -----------------------------------------
@dataclass(frozen=True)
class PrivateCA:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context like production's (verifies certificate and name), trusting this CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    folder = tmp_path_factory.mktemp("tls")
    now = datetime.now(UTC)  # TLS checks the real time, not the frozen clock
    ca_key, ca_cert = new_root_ca("idp test CA")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    found = PrivateCA(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    found.ca_file.write_bytes(certificate_pem(ca_cert))
    found.cert_file.write_bytes(certificate_pem(cert))
    found.key_file.write_bytes(private_pem(key))
    return found


# --- real SMTP servers ---------------------------------------------------------------------
@dataclass
class Received:
    message: email.message.EmailMessage
    tls: bool
    login: str | None


@dataclass
class Inbox:
    received: list[Received] = field(default_factory=list)

    @property
    def messages(self) -> list[email.message.EmailMessage]:
        return [r.message for r in self.received]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        tls = server.transport.get_extra_info("ssl_object") is not None
        login = session.auth_data.login.decode() if session.authenticated else None
        self.received.append(Received(message, tls, login))
        return "250 OK"


class Credentials:
    """An aiosmtpd authenticator that knows one user."""

    def __init__(self, login: str, password: str) -> None:
        self.login, self.password = login.encode(), password.encode()

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (self.login, self.password)
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


StartServer = Callable[..., Inbox]


@pytest.fixture
def start_smtp() -> Iterator[StartServer]:
    """Start an aiosmtpd server on ``port`` (aiosmtpd's SMTP keywords pass through); stop it after."""
    controllers: list[Controller] = []

    def start(port: int, **smtp: Any) -> Inbox:
        inbox = Inbox()
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **smtp)
        controller.start()
        controllers.append(controller)
        return inbox

    yield start
    for controller in controllers:
        controller.stop()


def a_message(subject: str = "Hello") -> email.message.EmailMessage:
    message = email.message.EmailMessage()
    message["From"] = SENDER
    message["To"] = "dana@example.org"
    message["Subject"] = subject
    message.set_content("Plain words")
    return message


def starttls_server(start_smtp: StartServer, test_ca: PrivateCA, port: int) -> Inbox:
    # require_starttls: the server refuses MAIL until the connection is encrypted; AUTH is only
    # offered over TLS (aiosmtpd's auth_require_tls default).
    return start_smtp(
        port,
        tls_context=test_ca.server_context(),
        require_starttls=True,
        authenticator=Credentials(SMTP_USER, SMTP_PASSWORD),
        auth_required=True,
    )


# --- transports ----------------------------------------------------------------------------
def test_starttls_encrypts_then_logs_in_with_the_percent_decoded_credentials(start_smtp, test_ca):
    port = free_port()
    inbox = starttls_server(start_smtp, test_ca, port)
    transport = SMTPTransport(
        f"smtp+starttls://{SMTP_USERINFO}@127.0.0.1:{port}", context=test_ca.client_context()
    )

    transport.send(a_message())

    (received,) = inbox.received
    assert received.tls
    assert received.login == SMTP_USER
    assert received.message["Subject"] == "Hello"


def test_smtps_speaks_tls_from_the_first_byte_and_logs_in(start_smtp, test_ca):
    port = free_port()
    inbox = start_smtp(
        port,
        ssl_context=test_ca.server_context(),
        authenticator=Credentials(SMTP_USER, SMTP_PASSWORD),
        # aiosmtpd counts only STARTTLS as TLS for AUTH; this connection is TLS throughout.
        auth_require_tls=False,
    )
    transport = SMTPTransport(f"smtps://{SMTP_USERINFO}@127.0.0.1:{port}", context=test_ca.client_context())

    transport.send(a_message())

    (received,) = inbox.received
    assert received.tls
    assert received.login == SMTP_USER


def test_plain_smtp_sends_without_tls(start_smtp):
    port = free_port()
    inbox = start_smtp(port)

    SMTPTransport(f"smtp://127.0.0.1:{port}").send(a_message())

    (received,) = inbox.received
    assert not received.tls and received.login is None


@pytest.mark.parametrize("scheme", ["smtp+starttls", "smtps"])
def test_a_server_certificate_from_an_unknown_ca_is_refused(start_smtp, test_ca, scheme):
    port = free_port()
    if scheme == "smtps":
        inbox = start_smtp(port, ssl_context=test_ca.server_context())
    else:
        inbox = start_smtp(port, tls_context=test_ca.server_context(), require_starttls=True)
    # No context given: the system's CAs, as in production, which do not know the test CA.
    transport = SMTPTransport(f"{scheme}://127.0.0.1:{port}")

    with pytest.raises(ssl.SSLCertVerificationError):
        transport.send(a_message())
    assert inbox.received == []


def test_the_default_context_trusts_the_cas_in_ssl_cert_file(start_smtp, test_ca, monkeypatch):
    port = free_port()
    inbox = starttls_server(start_smtp, test_ca, port)
    monkeypatch.setenv("SSL_CERT_FILE", str(test_ca.ca_file))

    SMTPTransport(f"smtp+starttls://{SMTP_USERINFO}@127.0.0.1:{port}").send(a_message())

    assert len(inbox.received) == 1


# --- the outbox over SMTP (both databases) ------------------------------------------------
@pytest.fixture(scope="module")
def smtp_port() -> int:
    """The port of IDP_SMTP_URL; nothing listens on it until a test starts a server there.

    One port for the module: one ``Settings``, so one app, for all its tests.
    """
    return free_port()


@pytest.fixture
def settings(database_url: str, keys_dir: Path, smtp_port: int) -> Settings:
    return settings_for_tests(
        database_url, keys_dir, smtp_url=f"smtp://127.0.0.1:{smtp_port}", mail_from=SENDER
    )


def worker(app: Flask) -> str:
    """Run ``idp mail worker --once``; return what it printed."""
    result = app.test_cli_runner().invoke(args=["mail", "worker", "--once"])
    assert result.exit_code == 0, result.output
    db.session.rollback()  # read what the worker committed
    db.session.expire_all()
    return result.output.strip()


def the_row() -> OutboundEmail:
    row = db.session.execute(select(OutboundEmail)).scalar_one()
    db.session.commit()
    return row


def test_mail_queued_during_an_smtp_outage_is_delivered_once_when_the_server_returns(
    app: Flask,
    clock: FrozenClock,
    make_account: Callable[..., Account],
    start_smtp: StartServer,
    smtp_port: int,
):
    account = make_account(username="dana.rivera", email="dana@example.org", first_name="Dana")
    assert services().notifier().send(account, "password_changed")
    db.session.commit()

    # The server is down: every attempt fails, the row stays, and the waits grow 1, 2, 4 minutes.
    waits = []
    for attempt in (1, 2, 3):
        assert worker(app) == "sent 0, failed 1"
        row = the_row()
        assert (row.attempts, row.sent_at) == (attempt, None)
        assert "ConnectionRefusedError" in (row.last_error or "")
        assert "dana.rivera" in row.body_text  # kept for the next attempt
        waits.append(row.next_attempt_at - clock.now())
        assert worker(app) == "sent 0, failed 0"  # not due yet
        clock.advance(waits[-1])
    assert waits == [timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4)]

    # The server is back on the same port; the clock is past the last wait.
    inbox = start_smtp(smtp_port)
    assert worker(app) == "sent 1, failed 0"
    sent_at = clock.now()
    assert worker(app) == "sent 0, failed 0"
    clock.advance(timedelta(hours=2))
    assert worker(app) == "sent 0, failed 0"

    (message,) = inbox.messages
    assert message["To"] == "dana@example.org"
    assert message["From"] == SENDER
    assert message["Subject"] == "Your password was changed"
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    assert "The password of your school sign-in account dana.rivera was changed" in plain.get_content()
    assert "<p>The password of your school sign-in account dana.rivera was changed" in html.get_content()
    row = the_row()
    assert row.sent_at == sent_at and row.attempts == 4
    # Sent: the row says to whom, why and when, and no longer holds the words.
    assert (row.to_address, row.purpose, row.subject) == (
        "dana@example.org",
        "password_changed",
        "Your password was changed",
    )
    assert (row.body_text, row.body_html) == ("", None)


def test_refused_smtp_credentials_leave_the_mail_queued_for_a_later_attempt(
    app: Flask, clock: FrozenClock, start_smtp: StartServer, test_ca: PrivateCA
):
    port = free_port()
    inbox = starttls_server(start_smtp, test_ca, port)
    Outbox(db.session, clock=clock).queue(
        to="dana@example.org", subject="Hi", body="Plain", html="<p>Plain</p>", purpose="test"
    )
    db.session.commit()
    wrong = SMTPTransport(
        f"smtp+starttls://mail%20user%40district.example:wrong@127.0.0.1:{port}",
        context=test_ca.client_context(),
    )

    assert deliver_due(db.session, wrong, sender=SENDER, clock=clock) == (0, 1)
    row = the_row()
    assert row.sent_at is None and row.attempts == 1
    assert row.last_error and row.last_error.startswith("SMTPAuthenticationError: (535")
    assert row.next_attempt_at == clock.now() + timedelta(minutes=1)
    assert inbox.received == []

    # The operator fixes IDP_SMTP_URL; the row goes at its next attempt.
    fixed = SMTPTransport(
        f"smtp+starttls://{SMTP_USERINFO}@127.0.0.1:{port}", context=test_ca.client_context()
    )
    assert deliver_due(db.session, fixed, sender=SENDER, clock=clock) == (0, 0)
    clock.advance(timedelta(minutes=1))
    assert deliver_due(db.session, fixed, sender=SENDER, clock=clock) == (1, 0)
    assert len(inbox.received) == 1
    assert the_row().sent_at is not None


def test_a_mail_out_of_attempts_stays_in_the_outbox_and_is_no_longer_tried(
    app: Flask, clock: FrozenClock, caplog: pytest.LogCaptureFixture
):
    row = Outbox(db.session, clock=clock).queue(
        to="dana@example.org", subject="Hi", body="Plain", purpose="test"
    )
    row.attempts = MAX_ATTEMPTS - 1
    db.session.commit()

    with caplog.at_level(logging.WARNING, logger="idp.mail.delivery"):
        assert worker(app) == "sent 0, failed 1"
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert f"given up after {MAX_ATTEMPTS} attempts" in record.getMessage()

    clock.advance(timedelta(days=30))
    assert worker(app) == "sent 0, failed 0"
    row = the_row()
    assert row.attempts == MAX_ATTEMPTS and row.sent_at is None
    assert "ConnectionRefusedError" in (row.last_error or "")
    assert (row.subject, row.body_text, row.body_html) == ("Hi", "", None)  # never sent again


def test_the_retries_span_about_a_day():
    waits = [MAIL_RETRIES.wait(attempts) for attempts in range(1, MAX_ATTEMPTS)]

    assert waits[:7] == [timedelta(minutes=m) for m in (1, 2, 4, 8, 16, 32, 60)]
    assert timedelta(hours=23) < sum(waits, timedelta()) < timedelta(hours=26)


def test_a_row_the_transport_chokes_on_does_not_stop_the_others(app: Flask, clock: FrozenClock):
    class Picky:
        longest_conversation = timedelta(seconds=1)

        def __init__(self) -> None:
            self.sent: list[str] = []

        def send(self, message: email.message.EmailMessage) -> None:
            if message["Subject"] == "bad":
                raise ValueError("cannot encode this message")
            self.sent.append(str(message["Subject"]))

    outbox = Outbox(db.session, clock=clock)
    outbox.queue(to="dana@example.org", subject="bad", body="x", purpose="test")
    outbox.queue(to="dana@example.org", subject="good", body="x", purpose="test")
    db.session.commit()
    picky = Picky()

    assert deliver_due(db.session, picky, sender=SENDER, clock=clock) == (1, 1)
    assert picky.sent == ["good"]
