"""Entry point of the ``sealwire`` plugin group: relay backends and ``sealwire relay serve``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import sealwire
from sealwire.components import CliCommand, RelayBackendProvider
from sealwire_relay._providers import BUILTIN_RELAY_BACKENDS

__all__ = ["sealwire_cli_commands", "sealwire_relay_backends"]


@sealwire.hookimpl
def sealwire_relay_backends() -> Sequence[RelayBackendProvider]:
    """``sqlite`` (embedded, the default) and ``nats`` (NATS JetStream)."""
    return list(BUILTIN_RELAY_BACKENDS)


def _configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="relay_command", required=True, metavar="ACTION")
    serve = sub.add_parser("serve", help="run a relay (embedded SQLite unless configured)")
    serve.add_argument("--config", help="relay TOML file (default: 127.0.0.1:8700, SQLite)")


def _run(args: argparse.Namespace) -> int:
    # The CLI, not the server, loads the plugins: the server is handed its providers.
    from sealwire.plugins import load_registry
    from sealwire_relay._server import RelayConfig, serve_relay

    config = RelayConfig.from_toml(args.config) if args.config else RelayConfig()
    return serve_relay(config, list(load_registry().relay_backends.values()))


RELAY_COMMAND = CliCommand(
    name="relay",
    help="the delivery service for offline agents and groups",
    configure=_configure,
    run=_run,
)


@sealwire.hookimpl
def sealwire_cli_commands() -> Sequence[CliCommand]:
    """``sealwire relay serve``."""
    return [RELAY_COMMAND]
