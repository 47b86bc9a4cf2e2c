"""A served request writes its task record once per state a caller can observe
(issue 14): the first record, with the request's receipt, is already WORKING (the
worker's first step), then the settled state; the store is never behind an event."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sealwire.agent import Agent, TaskContext
from sealwire.agent._task_records import TASKS_NAMESPACE, TaskRecord
from sealwire.binding import PeerIdentity
from sealwire.codec import Method, Request
from sealwire.identity import Identity
from sealwire.model import Message, Part, Role, SendMessageRequest, TaskState
from sealwire.store import MemoryStore
from sealwire.store._base import StoreTransaction


class CountingStore(MemoryStore):
    """A MemoryStore that records the state of every task record written."""

    def __init__(self) -> None:
        super().__init__()
        self.states: list[TaskState] = []

    def _seen(self, namespace: str, value: bytes) -> None:
        if namespace == TASKS_NAMESPACE:
            self.states.append(TaskRecord.from_bytes(value).task.status.state)

    def put(self, namespace: str, key: str, value: bytes) -> None:
        super().put(namespace, key, value)
        self._seen(namespace, value)

    def transaction(self) -> Any:
        store = self
        inner = super().transaction()

        class _Tx:
            def __enter__(self) -> StoreTransaction:
                self.tx = inner.__enter__()
                return self  # type: ignore[return-value]

            def __exit__(self, *exc: object) -> Any:
                return inner.__exit__(*exc)  # type: ignore[arg-type]

            def put(self, namespace: str, key: str, value: bytes) -> None:
                self.tx.put(namespace, key, value)
                store._seen(namespace, value)

            def __getattr__(self, name: str) -> Any:
                return getattr(self.tx, name)

        return _Tx()

    def stored_state(self, task_id: str) -> TaskState:
        raw = self.get(TASKS_NAMESPACE, task_id)
        assert raw is not None
        return TaskRecord.from_bytes(raw).task.status.state


def _request(text: str = "hi", method: Method = Method.SEND_MESSAGE) -> Request:
    message = Message(message_id=uuid.uuid4().hex, role=Role.USER, parts=(Part(text=text),))
    return Request(id=1, method=method, params=SendMessageRequest(message=message))


def _agent(store: CountingStore) -> tuple[Agent, PeerIdentity]:
    agent = Agent(Identity.generate(), store, name="server")
    caller = Identity.generate()
    return agent, PeerIdentity(agent_id=caller.agent_id, identity=caller.public)


async def test_a_served_request_writes_its_task_twice_working_then_completed() -> None:
    store = CountingStore()
    agent, peer = _agent(store)
    seen_by_handler: list[TaskState] = []

    async def handler(task: TaskContext) -> None:
        seen_by_handler.append(store.stored_state(task.task_id))
        await task.complete("done")

    agent.on_message(handler)
    receipts: list[str] = []
    results = [
        r
        async for r in agent.dispatch(
            _request(), peer, receipt=lambda tx, task_id: receipts.append(task_id)
        )
    ]
    task = results[-1].task
    assert task.status.state is TaskState.COMPLETED
    assert receipts == [task.id]
    assert store.states == [TaskState.WORKING, TaskState.COMPLETED]
    assert seen_by_handler == [TaskState.WORKING]


async def test_a_stream_never_sees_a_state_the_store_does_not_hold_yet() -> None:
    store = CountingStore()
    agent, peer = _agent(store)
    order = [TaskState.SUBMITTED, TaskState.WORKING, TaskState.COMPLETED]

    async def handler(task: TaskContext) -> None:
        await task.complete("done")

    agent.on_message(handler)
    seen: list[TaskState] = []
    async for event in agent.dispatch(_request(method=Method.SEND_STREAMING_MESSAGE), peer):
        state = event.task.status.state if event.task else event.status_update.status.state
        task_id = event.task.id if event.task else event.status_update.task_id
        assert order.index(store.stored_state(task_id)) >= order.index(state)
        seen.append(state)
    assert seen == order
    assert store.states == [TaskState.WORKING, TaskState.COMPLETED]


async def test_a_write_before_the_worker_runs_makes_its_working_step_write_again() -> None:
    store = CountingStore()
    agent, peer = _agent(store)
    release = asyncio.Event()
    started = asyncio.Event()

    async def handler(task: TaskContext) -> None:
        started.set()
        await release.wait()
        await task.complete("done")

    agent.on_message(handler)
    message = Message(message_id=uuid.uuid4().hex, role=Role.USER, parts=(Part(text="x"),))
    run = agent.tasks._start(SendMessageRequest(message=message), peer)
    agent.tasks.save(run)  # the record as it is in memory (SUBMITTED), as a follow-up writes
    assert store.stored_state(run.task.id) is TaskState.SUBMITTED
    await started.wait()
    assert store.stored_state(run.task.id) is TaskState.WORKING  # written again
    release.set()
    assert run.worker is not None
    await run.worker
    assert store.states == [
        TaskState.WORKING,
        TaskState.SUBMITTED,
        TaskState.WORKING,
        TaskState.COMPLETED,
    ]


async def test_a_task_without_follow_ups_makes_no_inbox_and_one_with_them_gets_them() -> None:
    store = CountingStore()
    agent, peer = _agent(store)
    release = asyncio.Event()
    got: list[str] = []

    async def handler(task: TaskContext) -> None:
        if task.message.parts[0].text == "wait":
            got.append((await task.next_message()).parts[0].text or "")
        await release.wait()
        await task.complete("done")

    agent.on_message(handler)
    release.set()
    plain = agent.tasks._start(SendMessageRequest(message=_request("x").params.message), peer)
    assert plain.worker is not None
    await plain.worker
    assert plain.follow_ups is None  # no queue made for a task nobody followed up
    release.clear()
    run = agent.tasks._start(SendMessageRequest(message=_request("wait").params.message), peer)
    follow = Message(
        message_id=uuid.uuid4().hex, role=Role.USER, parts=(Part(text="more"),), task_id=run.task.id
    )
    agent.tasks._start(SendMessageRequest(message=follow), peer)
    release.set()
    assert run.worker is not None
    await run.worker
    assert got == ["more"]
