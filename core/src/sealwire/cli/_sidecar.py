"""``sealwire sidecar``: put an A2A HTTP server behind this agent's bindings."""

from __future__ import annotations

import click

from sealwire.adapters._cli import run_sidecar
from sealwire.cli._common import home, read_card
from sealwire.cli.output import state

__all__ = ["COMMANDS"]


@click.command()
@click.option(
    "--upstream",
    required=True,
    metavar="URL",
    help="The A2A server's base URL on loopback, e.g. http://127.0.0.1:9999.",
)
@click.option(
    "--peer",
    multiple=True,
    metavar="NAME=CARD_FILE",
    help="A peer the upstream may call at <local>/peers/NAME (repeatable).",
)
@click.option(
    "--local",
    default="127.0.0.1:0",
    show_default=True,
    metavar="HOST:PORT",
    help="Where the upstream calls peers (default: a free loopback port).",
)
def sidecar(upstream: str, peer: tuple[str, ...], local: str) -> None:
    """Serve an A2A HTTP server's agent over this home's bindings until SIGINT/SIGTERM."""
    run_sidecar(
        upstream=upstream,
        peers=list(peer),
        local=local,
        home=home(),
        registry=state().registry,
        read_card=read_card,
        as_json=state().json,
    )


COMMANDS = (sidecar,)
