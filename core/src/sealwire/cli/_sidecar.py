"""``sealwire sidecar``: put an A2A HTTP server behind this agent's bindings."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from sealwire.adapters import PEERS_PREFIX, Sidecar
from sealwire.cli._common import close_agent, home, read_card, until_signalled
from sealwire.cli.output import state
from sealwire.config import open_agent
from sealwire.errors import ConfigurationError

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
    registry = state().registry
    side = Sidecar(
        upstream,
        lambda **options: open_agent(home(), registry, **options),
        peers=_parse_peers(peer),
        local=local,
    )
    asyncio.run(_serve(side, as_json=state().json))


def _parse_peers(items: tuple[str, ...]) -> dict[str, Any]:
    """``NAME=CARD_FILE`` arguments as {name: card JSON}."""
    peers: dict[str, Any] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or "/" in name:
            raise ConfigurationError(f"--peer must be NAME=CARD_FILE, not {item!r}")
        if name in peers:
            raise ConfigurationError(f"--peer {name} is given twice")
        peers[name] = read_card(path)
    return peers


async def _serve(sidecar: Sidecar, *, as_json: bool) -> None:
    try:
        async with sidecar:
            _started(sidecar, as_json=as_json)
            await until_signalled()
    finally:
        if sidecar.started:  # the home's relay client and store outlive the agent
            await close_agent(sidecar.agent)


def _started(sidecar: Sidecar, *, as_json: bool) -> None:
    """The lines a supervisor waits for: the agent, its bindings and the local URLs."""
    agent = sidecar.agent
    card_url = f"{sidecar.local_url}/.well-known/agent-card.json"
    peers = {name: f"{sidecar.local_url}{PEERS_PREFIX}{name}" for name in sidecar.peer_names}
    if as_json:
        offers = [{"binding": o.name, "url": o.url} for o in agent.card.offers]
        sidecar_line = {"agent_id": agent.agent_id, "upstream": sidecar.upstream,
                        "offers": offers, "card": card_url, "peers": peers}  # fmt: skip
        print(json.dumps({"sidecar": sidecar_line}), flush=True)
        return
    print(f"sidecar {agent.agent_id} for {sidecar.upstream}", flush=True)
    for offer in agent.card.offers:
        print(f"  {offer.name}: {offer.url}", flush=True)
    print(f"  card: {card_url}", flush=True)
    for name, url in peers.items():
        print(f"  peer {name}: {url}", flush=True)


COMMANDS = (sidecar,)
