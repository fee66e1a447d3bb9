"""``tls-smtp-report wireshark ...``: install the SMTP-TLS-Certs profile and smtptls.lua."""

from __future__ import annotations

from pathlib import Path

import click

from pyshark_tools.core.schema import EXIT_TSHARK, EXIT_USAGE
from pyshark_tools.errors import TsharkError
from pyshark_tools.wireshark import install as ws


class _Refused(click.ClickException):
    """A one-line error with one of the documented exit codes."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


def _echo_actions(actions: list[ws.Action]) -> None:
    for action in actions:
        click.echo(str(action))


@click.group(name="wireshark")
def wireshark() -> None:
    """Wireshark profile (SMTP-TLS-Certs) and Lua plugin (smtptls.lua)."""


@wireshark.command()
@click.option(
    "--force",
    is_flag=True,
    help="Replace files that differ from the shipped ones (keeps a .bak copy).",
)
def install(force: bool) -> None:
    """Copy the profile and the plugin into this user's Wireshark folders.

    Exit code 2 when files there differ from the shipped ones and --force is not given,
    3 when tshark is missing.
    """
    try:
        actions = ws.install(force=force)
    except ws.WouldOverwrite as exc:
        raise _Refused(str(exc), EXIT_USAGE) from exc
    except TsharkError as exc:
        raise _Refused(str(exc), EXIT_TSHARK) from exc
    except (ws.WiresharkInstallError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    _echo_actions(actions)
    note = ws.root_plugin_note()
    if note:
        click.echo(f"warning: {note}", err=True)
    click.echo(
        f"Open Wireshark, pick the '{ws.PROFILE_NAME}' profile (status bar, bottom right); "
        "restart Wireshark or use Analyze > Reload Lua Plugins for the plugin."
    )


@wireshark.command()
def uninstall() -> None:
    """Remove the installed profile files and plugin that were not changed since."""
    try:
        actions = ws.uninstall()
    except TsharkError as exc:
        raise _Refused(str(exc), EXIT_TSHARK) from exc
    except (ws.WiresharkInstallError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    _echo_actions(actions)


@wireshark.command(name="zip")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Zip file to write.",
)
def zip_(output: Path) -> None:
    """Build the zip for Configuration Profiles > Import > from zip file."""
    try:
        members = ws.build_zip(output)
    except (ws.WiresharkInstallError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {output}")
    for name in members:
        click.echo(f"  {name}")
