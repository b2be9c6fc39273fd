"""What every command shares: the app's services, and a refusal that leaves nothing written."""

from __future__ import annotations

from typing import NoReturn

import click

from idp.services import Services
from idp.web.context import services

__all__ = ["fail", "services"]


def fail(message: str) -> NoReturn:
    """Refuse with a one-line reason and a non-zero exit; whatever was pending is rolled back."""
    built: Services = services()
    built.session.rollback()
    raise click.ClickException(message)
