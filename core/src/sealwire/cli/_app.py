"""The root ``sealwire`` group: global options, core commands and the plugins' commands."""

from __future__ import annotations

from pathlib import Path

import click

from sealwire import __version__
from sealwire.cli.output import EXIT_CODES, CliState, configure_logging
from sealwire.config import default_home
from sealwire.errors import ConfigurationError
from sealwire.plugins import BLOCK_ENV, Registry

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "build_cli"]

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("console", "json")
DEFAULT_LOG_LEVEL = "warning"
DEFAULT_LOG_FORMAT = "console"

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _epilog() -> str:
    codes = "\n".join(f"  {int(code):>3}  {text}" for code, text in EXIT_CODES.items())
    return (
        "Global options may also come after the command (sealwire send --home h ...), "
        "and each has an environment variable: SEALWIRE_HOME, SEALWIRE_JSON, "
        f"SEALWIRE_LOG_LEVEL, SEALWIRE_LOG_FORMAT, SEALWIRE_DEBUG, {BLOCK_ENV}.\n\n"
        f"\b\nExit codes:\n{codes}\n\n"
        "Reference and troubleshooting: docs/cli.md."
    )


@click.group(
    name="sealwire",
    context_settings=CONTEXT_SETTINGS,
    epilog=_epilog(),
    help="End-to-end security for agent-to-agent (A2A) communication.",
)
@click.version_option(
    __version__, "--version", prog_name="sealwire", message="%(prog)s %(version)s"
)
@click.option(
    "--home",
    envvar="SEALWIRE_HOME",
    show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The agent's home folder.  [default: .sealwire]",
)
@click.option(
    "--disable-plugin",
    "disabled",
    multiple=True,
    metavar="NAME",
    help=f"Do not load this plugin (repeatable; adds to ${BLOCK_ENV}).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    envvar="SEALWIRE_JSON",
    show_envvar=True,
    help="Print data as JSON.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    envvar="SEALWIRE_LOG_LEVEL",
    show_envvar=True,
    help=f"Log level (logs go to stderr).  [default: {DEFAULT_LOG_LEVEL}; `relay serve`: info]",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    envvar="SEALWIRE_LOG_FORMAT",
    show_envvar=True,
    help="Log lines for people (console) or one JSON object each (json).  "
    f"[default: {DEFAULT_LOG_FORMAT}]",
)
@click.option(
    "--debug",
    is_flag=True,
    envvar="SEALWIRE_DEBUG",
    show_envvar=True,
    help="Show the traceback of an error (never shown otherwise).",
)
@click.pass_context
def cli(
    ctx: click.Context,
    home: Path | None,
    disabled: tuple[str, ...],
    as_json: bool,
    log_level: str | None,
    log_format: str | None,
    debug: bool,
) -> None:
    registry = ctx.obj
    assert isinstance(registry, Registry)
    if log_level is not None or log_format is not None:
        # Only when asked: a command that sets up its own logging (relay serve, at info)
        # keeps it otherwise.
        configure_logging(log_level or DEFAULT_LOG_LEVEL, log_format or DEFAULT_LOG_FORMAT)
    ctx.obj = CliState(
        home=home if home is not None else default_home(),
        json=as_json,
        debug=debug,
        registry=registry,
    )


def build_cli(registry: Registry) -> click.Group:
    """The root group with core's commands and those of ``registry``'s plugins."""
    from sealwire.cli import _agent, _plugins, _policy, _send, _sidecar, _store, _trust

    root = click.Group(
        name=cli.name,
        params=list(cli.params),
        callback=cli.callback,
        help=cli.help,
        epilog=cli.epilog,
        context_settings=dict(cli.context_settings),
    )
    for module in (_agent, _send, _trust, _policy, _plugins, _store, _sidecar):
        for command in module.COMMANDS:
            root.add_command(command)
    for name, contributed in registry.cli_commands.items():
        if name in root.commands:  # the registry already refuses two plugins' duplicates
            raise ConfigurationError(f"a plugin's CLI command {name!r} is one of core's")
        root.add_command(contributed.command, name)
    return root
