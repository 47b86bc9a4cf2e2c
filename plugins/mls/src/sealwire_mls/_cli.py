"""``sealwire group``: MLS groups of agents from the command line.

``create`` prints the new group's id (hex); ``add`` takes signed card files;
``remove`` takes agent ids; ``update`` refreshes this agent's keys; each of
those prints what it did. ``list`` shows each group and its members (a table,
or JSON with ``--json``); ``send`` sends a message to the group and prints one
JSON line per member's answer. Each command starts the agent of ``--home``
(joining any invitation waiting in its mailbox and catching up with its
groups' logs, with a spinner on a terminal), acts, and stops.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

from sealwire.agent import Agent
from sealwire.cli.output import Table, emit, state, waiting
from sealwire.codec import to_json
from sealwire.components import CliCommand
from sealwire.config import open_agent
from sealwire.errors import ConfigurationError

__all__ = ["GROUP_COMMAND", "SETTLE_SECONDS"]

SETTLE_SECONDS = 5.0
"""How long a command waits for invitations and group logs before acting."""

DEFAULT_SEND_TIMEOUT = 30.0
"""Seconds ``group send`` waits for the members' answers (each member's handler runs)."""


def _group_id(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ConfigurationError(f"not a hex group id: {text[:40]!r}") from None


def _read_card(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read card {path}: {type(exc).__name__}") from None


async def _session(act: Callable[[Agent], Awaitable[None]]) -> None:
    agent = open_agent(state().home, state().registry)
    if agent.relay is None:
        agent.store.close()
        raise ConfigurationError("groups need a relay: `sealwire init --relay URL`")
    try:
        async with agent:
            with waiting("catching up with the relay (invitations, group logs)"):
                await agent.sync_groups(SETTLE_SECONDS)
            await act(agent)
    finally:
        if agent.relay is not None:
            await agent.relay.close()
        agent.store.close()


def _run(act: Callable[[Agent], Awaitable[None]]) -> None:
    asyncio.run(_session(act))


def _did(action: str, group: str, text: str, **data: Any) -> None:
    emit({"action": action, "group": group, **data}, [text])


@click.group()
def group() -> None:
    """MLS groups of agents: create, add, remove, update, list, send."""


@group.command()
def create() -> None:
    """Create a group with this agent as its only member; print its id (hex)."""

    async def act(agent: Agent) -> None:
        created = (await agent.create_group()).hex()
        emit({"group": created}, [created])

    _run(act)


@group.command()
@click.argument("group_id")
@click.argument("cards", nargs=-1, required=True)
def add(group_id: str, cards: tuple[str, ...]) -> None:
    """Add agents to GROUP_ID, given their signed CARDS (files)."""
    read = [_read_card(path) for path in cards]

    async def act(agent: Agent) -> None:
        peers = [agent.peer(card) for card in read]
        with waiting(f"adding {len(peers)} member(s)"):
            await agent.add_to_group(_group_id(group_id), peers)
        ids = [peer.identity.agent_id for peer in peers]
        _did("add", group_id, f"added {', '.join(ids)} to {group_id}", agents=ids)

    _run(act)


@group.command()
@click.argument("group_id")
@click.argument("agents", nargs=-1, required=True)
def remove(group_id: str, agents: tuple[str, ...]) -> None:
    """Remove AGENTS (agent ids) from GROUP_ID."""

    async def act(agent: Agent) -> None:
        with waiting(f"removing {len(agents)} member(s)"):
            await agent.remove_from_group(_group_id(group_id), list(agents))
        text = f"removed {', '.join(agents)} from {group_id}"
        _did("remove", group_id, text, agents=list(agents))

    _run(act)


@group.command()
@click.argument("group_id")
def update(group_id: str) -> None:
    """Refresh this agent's keys in GROUP_ID (post-compromise security)."""

    async def act(agent: Agent) -> None:
        with waiting("committing new keys"):
            await agent.update_group_keys(_group_id(group_id))
        _did("update", group_id, f"updated this agent's keys in {group_id}")

    _run(act)


@group.command("list")
def list_groups() -> None:
    """The groups this agent is in, with their members."""

    async def act(agent: Agent) -> None:
        groups = sorted(agent.groups().items())
        data = [{"group": gid.hex(), "members": list(members)} for gid, members in groups]
        rows = tuple((gid.hex(), "\n".join(members)) for gid, members in groups)
        emit(data, Table(title="groups", columns=("group", "members"), rows=rows))

    _run(act)


@group.command()
@click.argument("group_id")
@click.argument("text")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_SEND_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the members' answers.",
)
def send(group_id: str, text: str, timeout: float) -> None:
    """Send TEXT to GROUP_ID; print one JSON line per member's answer."""

    async def act(agent: Agent) -> None:
        with waiting("waiting for the members' answers"):
            replies = await agent.send_to_group(_group_id(group_id), text, timeout=timeout)
        for reply in replies:
            line: dict[str, Any] = {"agent": reply.agent_id}
            if reply.result is not None:
                line["result"] = to_json(reply.result)
            if reply.error is not None:
                line["error"] = {"code": reply.error.code, "message": str(reply.error)}
            print(json.dumps(line), flush=True)

    _run(act)


GROUP_COMMAND = CliCommand(group)
