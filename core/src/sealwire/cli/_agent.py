"""The agent's own commands: ``init``, ``card``, ``serve``, ``demo``."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, cast

import click

from sealwire.agent import Agent, Handler
from sealwire.cli._common import close_agent, home, local_card, until_signalled
from sealwire.cli.output import emit, state
from sealwire.config import StoreConfig, describe_trust, init_home, open_agent, read_config
from sealwire.errors import ConfigurationError

__all__ = ["COMMANDS", "store_choice", "store_options"]


def store_choice(backend: str | None, options: tuple[str, ...]) -> StoreConfig | None:
    """``--store NAME`` and its ``--store-option KEY=VALUE`` (None: the default store)."""
    if backend is None:
        if options:
            raise ConfigurationError("--store-option goes with --store")
        return None
    return StoreConfig.from_cli(backend, list(options))


store_options = click.option(
    "--store-option",
    "store_option",
    multiple=True,
    metavar="KEY=VALUE",
    help="An option of the store backend, e.g. region=eu-west-1 (repeatable).",
)


@click.command()
@click.option("--name", default="sealwire-agent", show_default=True, help="The agent's name.")
@click.option(
    "--listen",
    multiple=True,
    metavar="URL",
    help="Transport URL to serve sessions on, e.g. tcp://127.0.0.1:7000 (repeatable).",
)
@click.option(
    "--relay",
    metavar="URL",
    help="Relay URL for mailboxes and groups: its signed descriptor is fetched and "
    "its relay id pinned in sealwire.toml.",
)
@click.option(
    "--relay-id", metavar="ID", help="The relay id you expect (sw1...): init fails if it differs."
)
@click.option(
    "--relay-ca",
    metavar="PEM",
    help="CA certificates (or the relay's own certificate) to trust for an https:// relay.",
)
@click.option("--post-quantum", is_flag=True, help="Add ML-DSA-65 and ML-KEM-768 keys.")
@click.option(
    "--store",
    metavar="BACKEND",
    help="Where the state lives: sqlite (default) or a store plugin (aws, vault, gcp).",
)
@store_options
def init(
    name: str,
    listen: tuple[str, ...],
    relay: str | None,
    relay_id: str | None,
    relay_ca: str | None,
    post_quantum: bool,
    store: str | None,
    store_option: tuple[str, ...],
) -> None:
    """Create an identity, a store and a configuration in the home."""
    registry = state().registry
    relay_ca_path = None
    if relay_ca and not relay:
        raise ConfigurationError("--relay-ca goes with --relay")
    descriptor = None
    lines = []
    if relay:
        from sealwire.relay import fetch_descriptor

        relay_ca_path = str(Path(relay_ca).resolve()) if relay_ca else None
        descriptor = asyncio.run(fetch_descriptor(relay, ca=relay_ca_path, relay_id=relay_id))
        relay_id = descriptor.relay_id
        lines.append(
            f"relay {descriptor.relay_id} at {descriptor.url} (version {descriptor.version})"
        )
    identity = init_home(
        home(),
        name=name,
        listen=listen,
        relay=relay.rstrip("/") if relay else None,
        relay_id=relay_id,
        relay_ca=relay_ca_path,
        post_quantum=post_quantum,
        store=store_choice(store, store_option),
        registry=registry,
    )
    trust = describe_trust(read_config(home(), registry))
    data = {
        "agent_id": identity.agent_id,
        "home": str(home()),
        "relay": None if descriptor is None else {"id": descriptor.relay_id, "url": relay},
        "trust": trust,
    }
    lines.append(f"created agent {identity.agent_id} in {home()}")
    emit(data, lines + trust)


@click.command()
def card() -> None:
    """Print this agent's signed card (A2A JSON)."""
    emit(local_card(home(), state().registry))


def _load_handler(spec: str) -> Handler:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"--handler must be MODULE:FUNCTION, not {spec!r}")
    sys.path.insert(0, os.getcwd())
    try:
        handler = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load handler {spec}: {exc}") from None
    if not callable(handler):
        raise ConfigurationError(f"handler {spec} is not callable")
    return cast(Handler, handler)


def _serving(agent: Agent) -> None:
    """The line a supervisor (or a test) waits for, then one per offered binding."""
    if state().json:
        offers = [{"binding": o.name, "url": o.url} for o in agent.card.offers]
        line: dict[str, Any] = {"agent_id": agent.agent_id, "name": agent.name, "offers": offers}
        print(json.dumps({"serving": line}), flush=True)
        return
    print(f"agent {agent.agent_id} ({agent.name}) is serving", flush=True)
    for offer in agent.card.offers:
        print(f"  {offer.name}: {offer.url}", flush=True)


async def _run_agent(agent: Agent) -> None:
    try:
        async with agent:
            _serving(agent)
            await until_signalled()
    finally:
        await close_agent(agent)


@click.command()
@click.option(
    "--handler",
    required=True,
    metavar="MODULE:FUNCTION",
    help="Async function taking a sealwire.agent.TaskContext.",
)
def serve(handler: str) -> None:
    """Run this agent: serve A2A requests with a handler until SIGINT/SIGTERM."""
    function = _load_handler(handler)
    agent = open_agent(home(), state().registry)
    agent.on_message(function)
    asyncio.run(_run_agent(agent))


@click.command()
@click.option("--transport", type=click.Choice(["tcp", "ws", "udp"]), default="tcp")
def demo(transport: str) -> None:
    """Two local agents exchange a task over a secure binding."""
    from sealwire.demo import run_demo

    code = asyncio.run(run_demo(state().registry, transport=transport))
    if code:
        raise click.exceptions.Exit(code)


COMMANDS = (init, card, serve, demo)
