"""How ``sealwire send`` follows a task to its end when the peer cannot stream it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import sealwire.cli._send as send_module
from sealwire.agent import agent_message
from sealwire.codec import Method, UnsupportedOperationError
from sealwire.model import (
    Role,
    SendMessageRequest,
    SendMessageResponse,
    Task,
    TaskState,
    TaskStatus,
)


def _task(state: TaskState) -> Task:
    return Task(id="t1", context_id="c1", status=TaskStatus(state))


class NoSubscribePeer:
    """Returns the task at once, refuses SubscribeToTask, settles on the third GetTask."""

    def __init__(self) -> None:
        self.calls: list[Method] = []
        self.gets = 0

    async def call(self, method: Method, params: Any) -> Any:
        self.calls.append(method)
        if method is Method.SEND_MESSAGE:
            return SendMessageResponse(task=_task(TaskState.WORKING))
        self.gets += 1
        return _task(TaskState.COMPLETED if self.gets == 3 else TaskState.WORKING)

    def stream(self, method: Method, params: Any) -> AsyncIterator[Any]:
        self.calls.append(method)

        async def refuse() -> AsyncIterator[Any]:
            raise UnsupportedOperationError("no subscriptions here")
            yield  # an async generator

        return refuse()


async def test_a_peer_that_cannot_stream_is_asked_again_until_the_task_settles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(send_module, "FIRST_POLL_SECONDS", 0.0)
    peer = NoSubscribePeer()
    progress = send_module._Progress()
    request = SendMessageRequest(message=agent_message("hi", role=Role.USER))
    task = await send_module._settle(peer, request, progress)  # type: ignore[arg-type]
    assert task.status.state is TaskState.COMPLETED
    assert progress.task_id == "t1"  # known from the first answer, for a timeout's message
    assert peer.calls == [Method.SEND_MESSAGE, Method.SUBSCRIBE_TO_TASK, *[Method.GET_TASK] * 3]
