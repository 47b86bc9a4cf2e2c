"""An agent keeps a bounded number of tasks in memory, the oldest finished ones
forgotten first (issue 18 item 2); a forgotten task is still read from the store."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from sealwire.agent import Agent, TaskContext, _tasks
from sealwire.binding import PeerIdentity
from sealwire.codec import Method, Request
from sealwire.identity import Identity
from sealwire.model import GetTaskRequest, Message, Part, Role, SendMessageRequest, Task
from sealwire.store import MemoryStore

BOUND = 5


async def _complete(task: TaskContext) -> None:
    await task.complete("done")


async def _call(agent: Agent, peer: PeerIdentity, method: Method, params: Any) -> Any:
    results = [r async for r in agent.dispatch(Request(id=1, method=method, params=params), peer)]
    return results[-1]


async def test_finished_tasks_beyond_the_bound_are_forgotten_then_read_from_the_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_tasks, "MAX_LIVE_TASKS", BOUND)
    agent = Agent(Identity.generate(), MemoryStore(), name="server")
    agent.on_message(_complete)
    caller = Identity.generate()
    peer = PeerIdentity(agent_id=caller.agent_id, identity=caller.public)
    ids = []
    for _ in range(4 * BOUND):
        message = Message(message_id=uuid.uuid4().hex, role=Role.USER, parts=(Part(text="hi"),))
        answer = await _call(agent, peer, Method.SEND_MESSAGE, SendMessageRequest(message=message))
        ids.append(answer.task.id)
    assert list(agent.tasks._runs) == ids[-BOUND:]  # the newest kept, the oldest forgotten
    first = await _call(agent, peer, Method.GET_TASK, GetTaskRequest(id=ids[0]))
    assert isinstance(first, Task) and first.id == ids[0]
