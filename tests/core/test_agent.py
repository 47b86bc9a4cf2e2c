"""Two agents exchange A2A tasks over real loopback TCP and WebSocket (test-only binding)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from testonly_binding import PlaintextTestBinding, PlaintextTestPlugin

from sealwire.agent import Agent, TaskContext
from sealwire.codec import TaskNotCancelableError, TaskNotFoundError
from sealwire.errors import PolicyError
from sealwire.identity import Identity
from sealwire.model import Message, TaskState
from sealwire.plugins import load_registry
from sealwire.policy import PolicyConfig
from sealwire.store import MemoryStore
from sealwire.testing.contract import SessionBindingContract

REGISTRY = load_registry(extra_plugins=[PlaintextTestPlugin()], load_entry_points=False)


class TestPlaintextContract(SessionBindingContract):
    binding_class = PlaintextTestBinding


async def handler(task: TaskContext) -> None:
    text = task.message.parts[0].text or ""
    if text == "fail":
        raise RuntimeError("boom")
    if text == "slow":
        await task.working("sleeping")
        await asyncio.sleep(30)
    if text == "ask":
        if len(task.task.history) == 1:
            await task.require_input("which colour?")
            return
        await task.complete(f"you said {task.message.parts[0].text}")
        return
    if text == "hi":
        await task.reply("hello")
        return
    await task.working("counting")
    await task.artifact(f"{len(text)} chars", name="count")
    await task.artifact(text.upper(), name="upper")
    await task.complete("done")


def make_agent(name: str, listen: list[str], **kwargs) -> Agent:
    agent = Agent(
        Identity.generate(), MemoryStore(), name=name, listen=listen, registry=REGISTRY, **kwargs
    )
    agent.on_message(handler)
    return agent


@pytest.fixture(params=["tcp", "ws"])
async def pair(request) -> AsyncIterator[tuple[Agent, Agent]]:
    server = make_agent("server", [f"{request.param}://127.0.0.1:0"])
    client = make_agent("client", [])
    async with server, client:
        yield server, client


async def test_task_with_artifacts(pair) -> None:
    server, client = pair
    peer = client.peer(server.card.card)
    task = await client.send_message(peer, "hello world")
    assert task.status.state is TaskState.COMPLETED
    assert [a.name for a in task.artifacts] == ["count", "upper"]
    assert task.artifacts[1].parts[0].text == "HELLO WORLD"
    again = await client.get_task(peer, task.id)
    assert again == task
    listed = await client.list_tasks(peer)
    assert [t.id for t in listed.tasks] == [task.id]


async def test_stream_events_in_order(pair) -> None:
    server, client = pair
    peer = client.peer(server.card.card)
    kinds = []
    async for event in client.stream_message(peer, "stream me"):
        if event.task is not None:
            kinds.append("task")
        elif event.status_update is not None:
            kinds.append(event.status_update.status.state.name)
        elif event.artifact_update is not None:
            kinds.append(f"artifact:{event.artifact_update.artifact.name}")
    assert kinds[0] == "task"
    assert kinds[-1] == "TASK_STATE_COMPLETED" or kinds[-1].endswith("COMPLETED")
    assert "artifact:count" in kinds and "artifact:upper" in kinds


async def test_cancel_and_errors(pair) -> None:
    server, client = pair
    peer = client.peer(server.card.card)
    events = client.stream_message(peer, "slow")
    first = await anext(events)
    task_id = first.task.id
    canceled = await client.cancel_task(peer, task_id)
    assert canceled.status.state is TaskState.CANCELED
    with pytest.raises(TaskNotCancelableError) as info:
        await client.cancel_task(peer, task_id)
    assert info.value.code == -32002
    with pytest.raises(TaskNotFoundError) as info2:
        await client.get_task(peer, "no-such-task")
    assert info2.value.code == -32001
    await events.aclose()


async def test_only_the_creator_sees_a_task(pair) -> None:
    server, client = pair
    other = make_agent("other", [])
    async with other:
        task = await client.send_message(client.peer(server.card.card), "mine")
        with pytest.raises(TaskNotFoundError):
            await other.get_task(other.peer(server.card.card), task.id)


async def test_input_required_then_resumed(pair) -> None:
    server, client = pair
    peer = client.peer(server.card.card)
    task = await client.send_message(peer, "ask")
    assert task.status.state is TaskState.INPUT_REQUIRED
    from sealwire.model import Part, Role

    follow = Message(
        message_id="m2",
        role=Role.USER,
        parts=(Part.from_text("blue"),),
        task_id=task.id,
        context_id=task.context_id,
    )
    done = await client.send_message(peer, follow)
    assert done.status.state is TaskState.COMPLETED
    assert done.id == task.id


async def test_reply_message_and_failure(pair) -> None:
    server, client = pair
    peer = client.peer(server.card.card)
    reply = await client.send_message(peer, "hi")
    assert isinstance(reply, Message) and reply.parts[0].text == "hello"
    failed = await client.send_message(peer, "fail")
    assert failed.status.state is TaskState.FAILED
    assert "boom" not in str(failed)  # internal details stay inside the agent


async def test_denied_peer_is_refused() -> None:
    client = make_agent("client", [])
    server = make_agent(
        "server",
        ["tcp://127.0.0.1:0"],
        policy=PolicyConfig(deny_peers=frozenset({client.agent_id})),
    )
    async with server, client:
        peer = client.peer(server.card.card)
        with pytest.raises(Exception):  # noqa: B017 - the server drops the connection
            await asyncio.wait_for(client.send_message(peer, "let me in"), 5)


async def test_stale_card_is_refused_as_downgrade() -> None:
    server = make_agent("server", ["tcp://127.0.0.1:0"])
    client = make_agent("client", [])
    async with server, client:
        peer = client.peer(server.card.card)
        decision = client.explain(peer)
        import attrs

        tampered = attrs.evolve(decision.negotiation, responder_offers=())
        from sealwire.agent._session import send_hello
        from sealwire.transport import connect

        stream = await connect(decision.url)
        with pytest.raises(PolicyError, match="refused"):
            await send_hello(stream, tampered)
        await stream.close()


async def test_a_card_naming_a_new_address_gets_a_connection_there() -> None:
    """Connections are kept per peer, binding and URL: a peer's new card (it moved to
    another listener, or another home relay) is dialled at its new address, not
    answered over the connection to the old one; the old one is still reused for the
    card that names it."""
    identity = Identity.generate()
    before, after = (
        Agent(
            identity, MemoryStore(), name="server", listen=["tcp://127.0.0.1:0"], registry=REGISTRY
        )
        for _ in range(2)
    )
    after.on_message(handler)
    client = make_agent("client", [])
    async with before, after, client:
        old, new = client.peer(before.card.card), client.peer(after.card.card)
        assert old.agent_id == new.agent_id and old.offers[0].url != new.offers[0].url
        first = await client.connect(old)
        moved = await client.connect(new)
        assert moved is not first
        assert await client.connect(old) is first and await client.connect(new) is moved
        task = await client.send_message(new, "hello world")
        assert task.status.state is TaskState.COMPLETED
        assert (await client.get_task(new, task.id)).id == task.id
        with pytest.raises(TaskNotFoundError):  # the old address is another process
            await client.get_task(old, task.id)
