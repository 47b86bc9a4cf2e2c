"""Entry point of the ``sealwire`` plugin group: relay backends and ``sealwire relay serve``."""

from __future__ import annotations

from collections.abc import Sequence

import click

import sealwire
from sealwire.cli.output import state
from sealwire.components import CliCommand, RelayBackendProvider
from sealwire_relay._providers import BUILTIN_RELAY_BACKENDS

__all__ = ["sealwire_cli_commands", "sealwire_relay_backends"]


@sealwire.hookimpl
def sealwire_relay_backends() -> Sequence[RelayBackendProvider]:
    """``sqlite`` (embedded, the default) and ``nats`` (NATS JetStream)."""
    return list(BUILTIN_RELAY_BACKENDS)


@click.group()
def relay() -> None:
    """The delivery service for offline agents and groups."""


@relay.command()
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    help="Relay TOML file (default: 127.0.0.1:8700, SQLite).",
)
def serve(config: str | None) -> None:
    """Run a relay (embedded SQLite unless configured) until SIGINT/SIGTERM."""
    # The CLI, not the server, loads the plugins: the server is handed its providers.
    from sealwire_relay._server import RelayConfig, serve_relay

    relay_config = RelayConfig.from_toml(config) if config else RelayConfig()
    code = serve_relay(relay_config, list(state().registry.relay_backends.values()))
    if code:
        raise click.exceptions.Exit(code)


RELAY_COMMAND = CliCommand(relay)


@sealwire.hookimpl
def sealwire_cli_commands() -> Sequence[CliCommand]:
    """``sealwire relay serve``."""
    return [RELAY_COMMAND]
