"""Item 6 of issue 8: ``sealwire group create|add|remove|list|send`` against a real relay."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from cli_runner import Cli
from ports import free_port

from sealwire.identity import verify_card
from sealwire_relay import RelayConfig, running_relay

HANDLER = """
async def handle(task):
    await task.complete("ack: " + task.message.parts[0].text)
"""


@pytest.mark.slow
async def test_group_commands(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text(HANDLER)
    config = RelayConfig(
        port=free_port(), identity_path=tmp_path / "relay.key", backend="sqlite",
        backend_options={"path": str(tmp_path / "relay.sqlite3")},
    )  # fmt: skip
    cli = Cli(tmp_path)
    async with running_relay(config) as relay:
        names = ("alice", "bob", "carol")
        await asyncio.gather(
            *(cli("--home", n, "init", "--name", n, "--relay", relay.url) for n in names)
        )
        cards = await asyncio.gather(*(cli("--home", n, "card") for n in names))
        ids = {}
        for name, card in zip(names, cards, strict=True):
            (tmp_path / f"{name}.json").write_text(card)
            ids[name] = verify_card(json.loads(card)).identity.agent_id
        # Bob and Carol serve (publishing their KeyPackages); invitations reach them live.
        servers = list(await asyncio.gather(cli.serve("bob"), cli.serve("carol")))
        try:
            group = (await cli("--home", "alice", "group", "create")).strip()
            assert len(bytes.fromhex(group)) == 16
            added = await cli("--home", "alice", "group", "add", group, "bob.json", "carol.json")
            assert added.strip() == f"added {ids['bob']}, {ids['carol']} to {group}"
            listed = json.loads(await cli("--home", "alice", "group", "list", "--json"))
            assert listed == [{"group": group, "members": sorted(ids.values())}]
            table = await cli("--home", "alice", "group", "list")  # a table for people
            assert group in table and all(agent_id in table for agent_id in ids.values())
            out = await cli("--home", "alice", "group", "send", group, "hi", "--timeout", "20")
            replies = [json.loads(line) for line in out.splitlines()]
            assert sorted(r["agent"] for r in replies) == sorted([ids["bob"], ids["carol"]])
            assert all("result" in r for r in replies), replies
            texts = {r["result"]["status"]["message"]["parts"][0]["text"] for r in replies}
            assert texts == {"ack: hi"}
        finally:
            for server in servers:
                server.terminate()
                await server.wait()
        removed = await cli("--json", "--home", "alice", "group", "remove", group, ids["carol"])
        assert json.loads(removed) == {"action": "remove", "group": group, "agents": [ids["carol"]]}
        updated = await cli("--home", "alice", "group", "update", group)
        assert updated.strip() == f"updated this agent's keys in {group}"
        (listed,) = json.loads(await cli("--home", "alice", "group", "list", "--json"))
        assert listed["members"] == sorted([ids["alice"], ids["bob"]])
