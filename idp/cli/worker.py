"""``idp worker`` (and its older name ``idp mail worker``): the background jobs, until stopped."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import click

from idp.cli.common import services
from idp.worker import Worker
from idp.worker.metrics import serve_worker_metrics

HELP = (
    "Every IDP_MAIL_POLL_SECONDS until stopped: answer recovery requests, send due mail, end "
    "timed-out sessions and tell their portals, retry back-channel logouts that failed; once "
    "an hour, delete rows past IDP_RETENTION_SECONDS. --once does it all once and exits. Any "
    "number may run at once; a job that fails is tried again later while the others go on; "
    "SIGTERM or Ctrl-C lets the job in hand finish, then exits."
)


def _run(once: bool) -> None:
    if not once:
        serve_worker_metrics(services().settings)  # a daemon thread: it ends with the process
    worker = Worker(services(), report=lambda line: click.echo(line, err=True))
    with stopping_on_signals(worker.stop):
        worker.run(once=once)


@contextmanager
def stopping_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Call ``stop`` on SIGTERM (what Docker and Kubernetes send) or SIGINT, instead of dying
    mid-job: the job in hand finishes, a mail the server accepted is recorded as sent."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers; its caller stops it then
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        click.echo(f"{signal.Signals(signum).name}: stopping after the current job", err=True)
        stop()

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@click.command("worker", help=HELP)
@click.option("--once", is_flag=True, help="Do what is due, then exit.")
def worker(once: bool) -> None:
    _run(once)


@click.group(help="The mail outbox (``idp mail worker`` is ``idp worker``).")
def mail() -> None:
    pass


@mail.command("worker", help=HELP)
@click.option("--once", is_flag=True, help="Do what is due, then exit.")
def mail_worker(once: bool) -> None:
    _run(once)
