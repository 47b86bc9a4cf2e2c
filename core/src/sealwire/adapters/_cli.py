"""``sealwire sidecar``: run a home's agent as the sidecar of an A2A HTTP server."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sealwire.adapters._sidecar import PEERS_PREFIX, Sidecar
from sealwire.config import open_agent
from sealwire.errors import ConfigurationError
from sealwire.plugins import Registry

__all__ = ["parse_peers", "run_sidecar"]


def parse_peers(items: list[str], read_card: Callable[[str], Any]) -> dict[str, Any]:
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


def run_sidecar(
    args: argparse.Namespace, home: Path, registry: Registry, read_card: Callable[[str], Any]
) -> int:
    """Serve until SIGINT/SIGTERM; print the agent id, its bindings and the local URLs."""
    peers = parse_peers(args.peer, read_card)
    sidecar = Sidecar(
        args.upstream,
        lambda **options: open_agent(home, registry, **options),
        peers=peers,
        local=args.local,
    )
    asyncio.run(_serve(sidecar))
    return 0


async def _serve(sidecar: Sidecar) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with sidecar:
            agent = sidecar.agent
            print(f"sidecar {agent.agent_id} for {sidecar.upstream}", flush=True)
            for offer in agent.card.offers:
                print(f"  {offer.name}: {offer.url}", flush=True)
            print(f"  card: {sidecar.local_url}/.well-known/agent-card.json", flush=True)
            for name in sidecar.peer_names:
                print(f"  peer {name}: {sidecar.local_url}{PEERS_PREFIX}{name}", flush=True)
            await stop.wait()
    finally:
        if sidecar.started:  # the home's relay client and store outlive the agent
            if sidecar.agent.relay is not None:
                await sidecar.agent.relay.close()
            sidecar.agent.store.close()
