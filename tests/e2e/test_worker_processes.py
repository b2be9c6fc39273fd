"""Two real ``idp worker`` processes over one outbox on PostgreSQL: every mail reaches a real SMTP
server exactly once, the workers go on after PostgreSQL ends their connections, and SIGTERM stops
them cleanly."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from idp.clock import SystemClock
from idp.mail.outbox import Outbox
from tests.database_drops import terminate_application
from tests.e2e.conftest import BIN, ROOT, District, provider_env
from tests.smtp import smtp_server

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_backends("postgresql")]

# The workers' connections carry this name, so that the test ends theirs and nobody else's.
APPLICATION_NAME = "idp-worker-e2e"
WAIT = 60.0


def queue(database_url: str, count: int, subject: str) -> None:
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            outbox = Outbox(session, clock=SystemClock(), message_domain="district.example")
            for n in range(count):
                outbox.queue(
                    to=f"parent{n}@example.org", subject=f"{subject} {n}", body="words", purpose="test"
                )
            session.commit()
    finally:
        engine.dispose()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; the bound is only for a broken build."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextmanager
def workers(env: dict[str, str], logs: Path, count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(count):
            with (logs / f"worker{n}.log").open("wb") as log:  # the child keeps its own copy
                processes.append(
                    subprocess.Popen([str(BIN / "idp"), "worker"], env=env, cwd=ROOT, stdout=log, stderr=log)
                )
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_two_worker_processes_send_once_survive_dropped_connections_and_stop_on_sigterm(
    district: District, tmp_path: Path
) -> None:
    database_url = f"{district.database_url}?application_name={APPLICATION_NAME}"
    database = district.database_url.rsplit("/", 1)[1]
    with smtp_server() as (inbox, port):
        env = provider_env(
            database_url,
            district.keys_dir,
            issuer="http://127.0.0.1",
            IDP_SMTP_URL=f"smtp://127.0.0.1:{port}",
            IDP_MAIL_FROM="no-reply@district.example",
            IDP_MAIL_POLL_SECONDS="1",
        )
        queue(district.database_url, 10, "Before")
        with workers(env, tmp_path, 2) as processes:
            wait_until(lambda: len(inbox.messages) >= 10, "the first ten mails")

            assert terminate_application(database, APPLICATION_NAME) >= 2
            queue(district.database_url, 10, "After")
            wait_until(lambda: len(inbox.messages) >= 20, "the mails queued after the drop")
            assert [process.poll() for process in processes] == [None, None]

            for process in processes:
                process.send_signal(signal.SIGTERM)
            codes = [process.wait(WAIT) for process in processes]

    logs = [(tmp_path / f"worker{n}.log").read_text() for n in range(2)]
    assert codes == [0, 0], logs
    assert all("SIGTERM: stopping after the current job" in log for log in logs), logs
    copies = Counter(str(message["Message-ID"]) for message in inbox.messages)
    assert len(copies) == 20 and set(copies.values()) == {1}, copies
    assert sorted(str(m["Subject"]).split()[0] for m in inbox.messages) == ["After"] * 10 + ["Before"] * 10
