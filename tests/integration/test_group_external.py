"""Item 5 of issue 8: external joins by GroupInfo, when the group's policy allows them.

Over a real relay on loopback: a member admits an agent (an admission note to
the group, the relay's member list, a GroupInfo in the joiner's mailbox); the
joiner commits itself in; a member that lost its state rejoins the same way,
replacing its old leaf; a group whose policy forbids external joins refuses.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from ports import free_port
from waiting import until

from sealwire.agent import Agent, TaskContext
from sealwire.errors import PolicyError
from sealwire.identity import Identity
from sealwire.relay import RelayClient
from sealwire.store import MemoryStore
from sealwire_relay import RelayConfig, running_relay

TIMEOUT = 20


@pytest.fixture
async def start(tmp_path) -> AsyncIterator:
    config = RelayConfig(
        port=free_port(), identity_path=tmp_path / "relay.key", backend="sqlite",
        backend_options={"path": str(tmp_path / "relay.sqlite3")},
    )  # fmt: skip
    agents: list[Agent] = []
    async with running_relay(config) as relay, contextlib.AsyncExitStack() as stack:

        async def start_agent(name: str, identity: Identity | None = None, **options) -> Agent:
            identity = identity or Identity.generate()
            client = RelayClient(relay.url, identity)
            stack.push_async_callback(client.close)
            agent = Agent(
                identity, MemoryStore(), name=name, relay=client, binding_options={"mls": options},
            )  # fmt: skip

            async def handler(task: TaskContext) -> None:
                await task.complete(f"{name} here")

            agent.on_message(handler)
            await agent.start()
            agents.append(agent)
            return agent

        yield start_agent
        for agent in agents:
            await agent.stop()


def _mls(agent: Agent):
    return agent._bindings["mls"]


async def _same_epoch(group: bytes, *agents: Agent) -> None:
    def agreed() -> bool:
        return len({_mls(a).epoch_authenticator(group) for a in agents}) == 1

    await until(agreed, "every member in the same epoch")


async def test_external_join_and_resync(start):
    alice = await start("alice", external_joins=True)
    bob, carol_id = await start("bob"), Identity.generate()
    carol = await start("carol", carol_id)
    group = await alice.create_group()
    await alice.add_to_group(group, [bob.card])
    await until(lambda: group in bob.groups(), "Bob's join")
    await _mls(alice).admit_external(group, carol.card)
    await until(lambda: group in carol.groups(), "Carol's external join")
    await _same_epoch(group, alice, bob, carol)
    everyone = tuple(sorted(a.agent_id for a in (alice, bob, carol)))
    for agent in (alice, bob, carol):
        await until(lambda a=agent: a.groups()[group] == everyone, "the same members")
    replies = await carol.send_to_group(group, "hello", timeout=TIMEOUT)
    assert sorted(r.result.status.message.parts[0].text for r in replies) == [
        "alice here",
        "bob here",
    ]
    # Carol loses her state; Bob (any member of an open group) lets her back in.
    await carol.stop()
    carol = await start("carol", carol_id)
    await _mls(bob).admit_external(group, carol.card)
    await until(lambda: group in carol.groups(), "Carol's resync")
    await _same_epoch(group, alice, bob, carol)
    assert alice.groups()[group] == everyone  # her old leaf was replaced, not kept
    replies = await alice.send_to_group(group, "again", timeout=TIMEOUT)
    assert sorted(r.agent_id for r in replies) == sorted([bob.agent_id, carol.agent_id])
    assert all(r.error is None for r in replies)


async def test_closed_groups_refuse_external_joins(start):
    alice, carol = await start("alice"), await start("carol")
    group = await alice.create_group()
    with pytest.raises(PolicyError):
        await _mls(alice).admit_external(group, carol.card)
    assert group not in carol.groups()
