"""A caller that leaves a task's stream (SendStreamingMessage or SubscribeToTask) at
any point, even at its first event, stops being a subscriber of the task at once: the
task no longer publishes to it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from sealwire.agent import Agent, TaskContext
from sealwire.binding import PeerIdentity
from sealwire.codec import Method, Request
from sealwire.identity import Identity
from sealwire.model import (
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    SubscribeToTaskRequest,
)
from sealwire.store import MemoryStore


def _message() -> Message:
    return Message(message_id=uuid.uuid4().hex, role=Role.USER, parts=(Part(text="hi"),))


@pytest.fixture
async def held() -> Any:
    """An agent whose handler works on until released, and a peer calling it."""
    release = asyncio.Event()
    agent = Agent(Identity.generate(), MemoryStore(), name="server")

    @agent.on_message
    async def _work(task: TaskContext) -> None:
        await task.working("started")
        await release.wait()
        await task.complete("done")

    caller = Identity.generate()
    peer = PeerIdentity(agent_id=caller.agent_id, identity=caller.public)
    yield agent, peer
    release.set()
    await agent.tasks.close()


async def _running_task(agent: Agent, peer: PeerIdentity) -> str:
    params = SendMessageRequest(
        message=_message(), configuration=SendMessageConfiguration(return_immediately=True)
    )
    request = Request(id=1, method=Method.SEND_MESSAGE, params=params)
    (answer,) = [r async for r in agent.dispatch(request, peer)]
    return str(answer.task.id)


@pytest.mark.parametrize("events", [1, 2])
async def test_leaving_a_subscription_unsubscribes_at_once(held: Any, events: int) -> None:
    agent, peer = held
    task_id = await _running_task(agent, peer)
    run = agent.tasks._runs[task_id]
    before = len(run.subscribers)
    request = Request(
        id=2, method=Method.SUBSCRIBE_TO_TASK, params=SubscribeToTaskRequest(id=task_id)
    )
    stream = agent.dispatch(request, peer)
    await anext(stream)  # the task as it is now
    assert len(run.subscribers) == before + 1
    if events == 2:
        waiting = asyncio.ensure_future(anext(stream))  # waits for the next event
        await asyncio.sleep(0.01)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
    await stream.aclose()
    assert len(run.subscribers) == before  # now, not once the generators are collected


async def test_leaving_a_streamed_message_at_its_first_event_unsubscribes(held: Any) -> None:
    agent, peer = held
    request = Request(
        id=3, method=Method.SEND_STREAMING_MESSAGE, params=SendMessageRequest(message=_message())
    )
    stream = agent.dispatch(request, peer)
    first = await anext(stream)  # the task, submitted
    run = agent.tasks._runs[first.task.id]
    assert len(run.subscribers) == 1
    await stream.aclose()
    assert run.subscribers == []
