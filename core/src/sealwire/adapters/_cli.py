"""``sealwire sidecar``: run a home's agent as the sidecar of an A2A HTTP server."""

from __future__ import annotations

import asyncio
import json
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
    *,
    upstream: str,
    peers: list[str],
    local: str,
    home: Path,
    registry: Registry,
    read_card: Callable[[str], Any],
    as_json: bool = False,
) -> None:
    """Serve until SIGINT/SIGTERM; print the agent id, its bindings and the local URLs
    (one JSON line with ``as_json``)."""
    sidecar = Sidecar(
        upstream,
        lambda **options: open_agent(home, registry, **options),
        peers=parse_peers(peers, read_card),
        local=local,
    )
    asyncio.run(_serve(sidecar, as_json=as_json))


async def _serve(sidecar: Sidecar, *, as_json: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with sidecar:
            _started(sidecar, as_json=as_json)
            await stop.wait()
    finally:
        if sidecar.started:  # the home's relay client and store outlive the agent
            if sidecar.agent.relay is not None:
                await sidecar.agent.relay.close()
            sidecar.agent.store.close()


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
