"""Issue 14.4: a request to a group is posted once; each member's answer goes to the
requester alone; ``send_to_group`` reports every member, with a result or an error.

An embedded relay (SQLite) on loopback and agents with in-memory stores.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from ports import free_port
from waiting import until

from sealwire.agent import Agent, TaskContext
from sealwire.identity import Identity
from sealwire.relay import RelayClient, RelayUnavailable
from sealwire.store import MemoryStore
from sealwire_relay import RelayConfig, running_relay

TIMEOUT = 20
SHORT = 3.0  # the wait for an answer that will not come


class Agents:
    def __init__(self, url: str, stack: contextlib.AsyncExitStack) -> None:
        self.url, self.stack = url, stack

    async def start(self, name: str) -> Agent:
        identity = Identity.generate()
        relay = RelayClient(self.url, identity)
        self.stack.push_async_callback(relay.close)
        agent = Agent(identity, MemoryStore(), name=name, relay=relay)

        async def handler(task: TaskContext) -> None:
            if name == "bob":
                raise RuntimeError("bob's handler breaks")
            await task.complete(f"{name}: {task.message.parts[0].text}")

        agent.on_message(handler)
        await agent.start()
        self.stack.push_async_callback(agent.stop)
        return agent


@pytest.fixture
async def agents(tmp_path) -> AsyncIterator[Agents]:
    config = RelayConfig(
        port=free_port(), identity_path=tmp_path / "relay.key", backend="sqlite",
        backend_options={"path": str(tmp_path / "relay.sqlite3")},
    )  # fmt: skip
    async with running_relay(config) as relay, contextlib.AsyncExitStack() as stack:
        yield Agents(relay.url, stack)


async def test_every_member_is_reported_with_a_result_or_an_error(agents: Agents) -> None:
    alice, bob, carol, dave, erin = [
        await agents.start(n) for n in ("alice", "bob", "carol", "dave", "erin")
    ]
    group = await alice.create_group()
    await alice.add_to_group(group, [a.card for a in (bob, carol, dave, erin)])
    await until(lambda: all(group in a.groups() for a in (bob, carol, dave, erin)), "the joins")
    await carol.stop()  # Carol will not answer
    real_seal = dave._groups.answers.seal

    def wrong_key(group_id, request, requester, key, frame):  # Dave seals with a wrong key
        return real_seal(group_id, request, requester, bytes(32), frame)

    dave._groups.answers.seal = wrong_key
    replies = await alice.send_to_group(group, "report", timeout=SHORT)
    by_id = {r.agent_id: r for r in replies}
    assert sorted(by_id) == sorted(a.agent_id for a in (bob, carol, dave, erin))
    assert by_id[erin.agent_id].result.status.message.parts[0].text == "erin: report"
    assert by_id[bob.agent_id].result.status.state.name == "FAILED"  # his handler's failure
    assert "no answer within" in str(by_id[carol.agent_id].error)
    assert "could not be opened" in str(by_id[dave.agent_id].error)
    assert all(r.result is None for r in (by_id[carol.agent_id], by_id[dave.agent_id]))


async def test_a_request_that_cannot_be_posted_is_an_error_for_every_member(
    agents: Agents,
) -> None:
    """Today the relay's refusal escaped ``send_to_group`` as an exception."""
    alice, erin = await agents.start("alice"), await agents.start("erin")
    group = await alice.create_group()
    await alice.add_to_group(group, [erin.card])
    await until(lambda: group in erin.groups(), "the join")

    async def down(*args: object, **kwargs: object) -> int:
        raise RelayUnavailable("relay down")

    alice.relay.post_group_message = down  # type: ignore[method-assign]
    (reply,) = await alice.send_to_group(group, "anyone?", timeout=TIMEOUT)
    assert reply.agent_id == erin.agent_id and reply.result is None
    assert "could not be posted" in str(reply.error)
