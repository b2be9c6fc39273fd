"""``idp worker`` (and its older name ``idp mail worker``): the background jobs, until stopped."""

from __future__ import annotations

import click

from idp.cli.common import services
from idp.worker import Worker

HELP = (
    "Every IDP_MAIL_POLL_SECONDS until stopped: answer recovery requests, send due mail, end "
    "timed-out sessions and tell their portals, retry back-channel logouts that failed; once "
    "an hour, delete rows past IDP_RETENTION_SECONDS. --once does it all once and exits."
)


def _run(once: bool) -> None:
    Worker(services(), report=lambda line: click.echo(line, err=True)).run(once=once)


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
