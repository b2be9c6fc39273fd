"""What every command shares: the app's services, and a refusal that leaves nothing written."""

from __future__ import annotations

import getpass
from typing import NoReturn

import click

from idp.services import Services
from idp.web.context import services

__all__ = ["cli_actor", "fail", "services"]


def fail(message: str) -> NoReturn:
    """Refuse with a one-line reason and a non-zero exit; whatever was pending is rolled back."""
    built: Services = services()
    built.session.rollback()
    raise click.ClickException(message)


def cli_actor() -> str:
    """Return how the audit trail names whoever runs this command: ``cli:<operating-system user>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"
