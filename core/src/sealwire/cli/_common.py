"""Helpers of several core commands: the home, cards, the local policy, running an agent."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sealwire import __version__
from sealwire.agent import Agent
from sealwire.agent._card import build_card
from sealwire.cli.output import state
from sealwire.config import AgentConfig, open_home, push_policy, relay_address
from sealwire.errors import SealwireError
from sealwire.plugins import Registry
from sealwire.policy import Policy, Situation

__all__ = [
    "SITUATIONS",
    "close_agent",
    "local_card",
    "policy_for",
    "read_card",
    "run_async",
    "until_signalled",
]

T = TypeVar("T")

SITUATIONS = {
    "online": Situation(online=True),
    "offline": Situation(online=False),
    "group": Situation(group=True),
    "http": Situation(external_http=True),
    "datagram": Situation(datagram=True, online=True),
}
"""The ``--situation`` choices (``auto``, the default of ``send``, is no entry: the
agent's own choice with its offline fallback)."""


def read_card(path: str) -> Any:
    """A peer's card JSON from a file, or stdin for ``-``."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        return json.loads(text)
    except OSError as exc:
        raise SealwireError(f"cannot read card {path}: {exc.strerror}") from None
    except ValueError:
        raise SealwireError(f"card {path} is not JSON") from None


def policy_for(config: AgentConfig, registry: Registry) -> Policy:
    """The agent's policy, with its binding options (what Noise's hybrid depends on)."""
    return Policy(
        config.policy, registry.bindings, registry.policy_rules, binding_options=config.bindings
    )


def local_card(home: Path, registry: Registry) -> dict[str, Any]:
    """The home's agent card, signed, as it would serve it."""
    config, identity, store = open_home(home, registry)
    store.close()
    return build_card(
        identity,
        name=config.name,
        description=config.description,
        version=__version__,
        bindings=policy_for(config, registry).local_offers(identity.public),
        listen_urls=config.listen,
        relay_address=relay_address(config, identity),
        options=config.bindings,
        push_notifications=push_policy(config, home).enabled,
    )


async def close_agent(agent: Agent) -> None:
    """Close what a home's agent holds beyond its own stop: the relay client and store."""
    if agent.relay is not None:
        await agent.relay.close()
    agent.store.close()


async def until_signalled() -> None:
    """Wait for SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run_async(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work()`` in a fresh event loop (one per command)."""

    async def _run() -> T:
        return await work()

    return asyncio.run(_run())


def home() -> Path:
    """The ``--home`` of this run."""
    return state().home
