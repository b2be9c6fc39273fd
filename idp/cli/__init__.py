"""The ``idp`` command: database, demo district, clients, students, accounts, keys, policies, worker."""

from __future__ import annotations

import sys
from typing import Any

import click
from flask import Flask
from flask.cli import FlaskGroup


def _create_app() -> Flask:
    from idp import create_app
    from idp.logs import send_logs_to_stderr

    send_logs_to_stderr()  # stdout is the command's output (--json)
    return create_app()


class IdpGroup(FlaskGroup):
    """Flask's CLI with configuration errors reported as one line instead of a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        from idp.config import ConfigError
        from idp.keys.store import KeySetError

        try:
            return super().main(*args, **kwargs)
        except (ConfigError, KeySetError) as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(1)


main = IdpGroup(
    create_app=_create_app,
    add_default_commands=True,
    add_version_option=False,
    help="Operate the school identity provider.",
)


def register_cli(app: Flask) -> None:
    from idp.cli import accounts, clients, demo, keys, policy, roster, students, worker
    from idp.cli import schools as school_commands
    from idp.cli import staff as staff_commands

    for group in (
        demo.demo,
        clients.clients,
        students.students,
        school_commands.schools,
        roster.roster,
        accounts.accounts,
        keys.keys,
        policy.policy,
        policy.district,
        worker.worker,
        worker.mail,
        staff_commands.staff,
    ):
        app.cli.add_command(group)
