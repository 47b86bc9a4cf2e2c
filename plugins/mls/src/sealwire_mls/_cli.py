"""``sealwire group``: MLS groups of agents from the command line.

``create`` prints the new group's id (hex); ``add`` takes signed card files;
``remove`` takes agent ids; ``update`` refreshes this agent's keys; ``list``
prints each group and its members; ``send`` sends a message to the group and
prints one JSON line per member's answer. Each command starts the agent of
``--home`` (joining any invitation waiting in its mailbox and catching up with
its groups' logs), acts, and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sealwire.agent import Agent
from sealwire.codec import to_json
from sealwire.components import CliCommand
from sealwire.config import default_home, open_agent
from sealwire.errors import ConfigurationError

__all__ = ["GROUP_COMMAND"]

SETTLE_SECONDS = 5.0
"""How long a command waits for invitations and group logs before acting."""


def _configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="group_command", required=True, metavar="ACTION")
    sub.add_parser("create", help="create a group with this agent as its only member")
    p = sub.add_parser("add", help="add agents, given their signed card files")
    p.add_argument("group", help="the group id (hex)")
    p.add_argument("cards", nargs="+", help="card JSON files")
    p = sub.add_parser("remove", help="remove agents by agent id")
    p.add_argument("group")
    p.add_argument("agents", nargs="+")
    p = sub.add_parser("update", help="refresh this agent's keys in the group")
    p.add_argument("group")
    sub.add_parser("list", help="the groups this agent is in, with their members")
    p = sub.add_parser("send", help="send a message to the group; one answer per member")
    p.add_argument("group")
    p.add_argument("text")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for answers")


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


async def _create(agent: Agent, args: argparse.Namespace) -> None:
    print((await agent.create_group()).hex())


async def _add(agent: Agent, args: argparse.Namespace) -> None:
    await agent.add_to_group(_group_id(args.group), [_read_card(p) for p in args.cards])


async def _remove(agent: Agent, args: argparse.Namespace) -> None:
    await agent.remove_from_group(_group_id(args.group), args.agents)


async def _update(agent: Agent, args: argparse.Namespace) -> None:
    await agent.update_group_keys(_group_id(args.group))


async def _list(agent: Agent, args: argparse.Namespace) -> None:
    for group_id, members in sorted(agent.groups().items()):
        print(json.dumps({"group": group_id.hex(), "members": list(members)}))


async def _send(agent: Agent, args: argparse.Namespace) -> None:
    for reply in await agent.send_to_group(_group_id(args.group), args.text, timeout=args.timeout):
        line: dict[str, Any] = {"agent": reply.agent_id}
        if reply.result is not None:
            line["result"] = to_json(reply.result)
        if reply.error is not None:
            line["error"] = {"code": reply.error.code, "message": str(reply.error)}
        print(json.dumps(line), flush=True)


ACTIONS: dict[str, Callable[[Agent, argparse.Namespace], Awaitable[None]]] = {
    "create": _create,
    "add": _add,
    "remove": _remove,
    "update": _update,
    "list": _list,
    "send": _send,
}


async def _session(agent: Agent, args: argparse.Namespace) -> None:
    try:
        async with agent:
            await agent.sync_groups(SETTLE_SECONDS)
            await ACTIONS[args.group_command](agent, args)
    finally:
        if agent.relay is not None:
            await agent.relay.close()
        agent.store.close()


def _run(args: argparse.Namespace) -> int:
    home = Path(args.home) if getattr(args, "home", None) else default_home()
    agent = open_agent(home)
    if agent.relay is None:
        raise ConfigurationError("groups need a relay: `sealwire init --relay URL`")
    asyncio.run(_session(agent, args))
    return 0


GROUP_COMMAND = CliCommand(
    name="group",
    help="MLS groups of agents: create, add, remove, update, list, send",
    configure=_configure,
    run=_run,
)
