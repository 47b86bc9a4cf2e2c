"""One task as it runs: its state, artifacts and reply message, each change saved and
then published to its subscribers; and the context its handler sees of it."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import attrs

from sealwire.binding import PeerIdentity
from sealwire.codec import InvalidParamsError, TaskNotCancelableError
from sealwire.model import (
    Artifact,
    Message,
    Part,
    Role,
    StreamResponse,
    Task,
    TaskArtifactUpdateEvent,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)

__all__ = [
    "INTERRUPTED",
    "Handler",
    "TaskContext",
    "TaskKeeper",
    "TaskRun",
    "agent_message",
    "now",
]

MAX_FOLLOW_UPS = 64
"""Follow-up messages queued for a running handler that has not read them: past
this, more are refused rather than held in memory without end."""
MAX_SUBSCRIBER_BACKLOG = 1024
"""Events queued for one slow subscriber before it is dropped."""

INTERRUPTED = frozenset({TaskState.INPUT_REQUIRED, TaskState.AUTH_REQUIRED})


def now() -> str:
    """The current time as an RFC 3339 UTC timestamp, to the millisecond."""
    return (
        datetime.datetime.now(datetime.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def agent_message(
    content: str | Sequence[Part] | Message,
    *,
    task_id: str | None = None,
    context_id: str | None = None,
    role: Role = Role.AGENT,
) -> Message:
    """A message from this agent: text, parts, or a message passed through."""
    if isinstance(content, Message):
        return content
    parts = (Part.from_text(content),) if isinstance(content, str) else tuple(content)
    return Message(
        message_id=str(uuid.uuid4()), role=role, parts=parts, task_id=task_id, context_id=context_id
    )


Handler = Callable[["TaskContext"], Awaitable[None]]
"""Serves an incoming message: reports progress and results through the context."""


class TaskKeeper(Protocol):
    """What a running task reports its changes to (the task manager)."""

    def save(self, run: TaskRun) -> None:
        """Write the task's record."""

    def notify(self, run: TaskRun, event: StreamResponse) -> None:
        """Hand a written update of ``run`` to its webhooks (never blocks)."""


class TaskContext:
    """What a handler sees of the task it serves, and how it reports on it."""

    def __init__(self, run: TaskRun, message: Message, peer: PeerIdentity) -> None:
        self._run = run
        self.message = message
        """The message that started or resumed the task."""
        self.peer = peer
        """The verified identity of the agent that sent it."""

    @property
    def task(self) -> Task:
        return self._run.task

    @property
    def task_id(self) -> str:
        return self._run.task.id

    @property
    def context_id(self) -> str:
        return self._run.task.context_id

    def _message(self, content: str | Sequence[Part] | Message | None) -> Message | None:
        if content is None:
            return None
        return agent_message(content, task_id=self.task_id, context_id=self.context_id)

    async def next_message(self) -> Message:
        """The next follow-up message the caller sent to this task while it is open
        (``SendMessage`` naming its id); waits for one."""
        return await self._run.inbox.get()

    async def working(self, message: str | Sequence[Part] | Message | None = None) -> None:
        """Report progress (state WORKING)."""
        await self._run.set_state(TaskState.WORKING, self._message(message))

    async def artifact(
        self,
        parts: Sequence[Part] | str,
        *,
        name: str | None = None,
        artifact_id: str | None = None,
        append: bool = False,
        last_chunk: bool = True,
    ) -> str:
        """Publish an artifact (or a chunk of one); returns its id."""
        if isinstance(parts, str):
            parts = (Part.from_text(parts),)
        artifact = Artifact(
            artifact_id=artifact_id or str(uuid.uuid4()), parts=tuple(parts), name=name
        )
        await self._run.add_artifact(artifact, append=append, last_chunk=last_chunk)
        return artifact.artifact_id

    async def complete(self, message: str | Sequence[Part] | Message | None = None) -> None:
        await self._run.set_state(TaskState.COMPLETED, self._message(message))

    async def fail(self, message: str | Sequence[Part] | Message | None = None) -> None:
        await self._run.set_state(TaskState.FAILED, self._message(message))

    async def reject(self, message: str | Sequence[Part] | Message | None = None) -> None:
        await self._run.set_state(TaskState.REJECTED, self._message(message))

    async def require_input(self, message: str | Sequence[Part] | Message) -> None:
        """Pause the task until the caller sends another message to it."""
        await self._run.set_state(TaskState.INPUT_REQUIRED, self._message(message))

    async def reply(self, message: str | Sequence[Part] | Message) -> None:
        """Answer with a message instead of a task (only before any task update)."""
        await self._run.set_reply(self._message(message))


@attrs.define
class TaskRun:
    """A task in memory: its record, its handler's worker, inbox and subscribers."""

    manager: TaskKeeper
    owner: str
    task: Task
    reply: Message | None = None
    worker: asyncio.Task[None] | None = None
    subscribers: list[asyncio.Queue[StreamResponse | None]] = attrs.Factory(list)
    updated: bool = False
    announced: bool = False  # the task went out before it settled (returnImmediately)
    follow_ups: asyncio.Queue[Message] | None = None
    """Follow-up messages for its handler: made with the first one or the first wait
    for one (most tasks never see one, and a queue costs an Event to make)."""
    push: tuple[TaskPushNotificationConfig, ...] = ()  # its webhooks, kept in its record
    ahead: Task | None = None
    """What the store holds already when the task's first record was written in the state
    its worker takes first (WORKING, no message): that step then only announces it."""

    @property
    def inbox(self) -> asyncio.Queue[Message]:
        """Follow-up messages sent to the task while it is open, for its handler."""
        if self.follow_ups is None:
            self.follow_ups = asyncio.Queue(MAX_FOLLOW_UPS)
        return self.follow_ups

    @property
    def state(self) -> TaskState:
        return self.task.status.state

    def settled(self) -> bool:
        return self.reply is not None or self.state.is_terminal or self.state in INTERRUPTED

    def finished(self) -> bool:
        """Settled and its worker done: it may be forgotten (the store keeps it)."""
        return self.settled() and self.worker is not None and self.worker.done()

    def subscribe(self) -> asyncio.Queue[StreamResponse | None]:
        """A new queue the task publishes its events to (``None`` once it settles)."""
        queue: asyncio.Queue[StreamResponse | None] = asyncio.Queue(MAX_SUBSCRIBER_BACKLOG)
        self.subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[StreamResponse | None]) -> None:
        """Stop publishing to ``queue`` (whether or not it was still subscribed)."""
        if queue in self.subscribers:
            self.subscribers.remove(queue)

    def _publish(self, event: StreamResponse | None) -> None:
        for queue in list(self.subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self.unsubscribe(queue)

    async def set_state(
        self, state: TaskState, message: Message | None, *, by_handler: bool = True
    ) -> None:
        if self.state.is_terminal:
            raise TaskNotCancelableError(f"task {self.task.id} is already {self.state.name}")
        ahead, self.ahead = self.ahead, None
        if (
            ahead is not None
            and message is None
            and state is ahead.status.state
            and ahead.history is self.task.history
            and ahead.artifacts is self.task.artifacts
        ):  # written already (nothing changed the task since): announced only
            status = ahead.status
            self.task = ahead
        else:
            history = self.task.history + ((message,) if message is not None else ())
            status = TaskStatus(state=state, message=message, timestamp=now())
            self.task = attrs.evolve(self.task, status=status, history=history)
            self.manager.save(self)
        self.updated = self.updated or by_handler
        event = StreamResponse(
            status_update=TaskStatusUpdateEvent(
                task_id=self.task.id, context_id=self.task.context_id, status=status
            )
        )
        self.manager.notify(self, event)
        self._publish(event)
        if self.settled():
            self._publish(None)

    async def add_artifact(self, artifact: Artifact, *, append: bool, last_chunk: bool) -> None:
        if self.state.is_terminal:
            raise TaskNotCancelableError(f"task {self.task.id} is already {self.state.name}")
        artifacts = list(self.task.artifacts)
        index = next(
            (i for i, a in enumerate(artifacts) if a.artifact_id == artifact.artifact_id), None
        )
        if index is not None and append:
            old = artifacts[index]
            artifacts[index] = attrs.evolve(old, parts=old.parts + artifact.parts)
        elif index is not None:
            artifacts[index] = artifact
        else:
            artifacts.append(artifact)
        self.task = attrs.evolve(self.task, artifacts=tuple(artifacts))
        self.updated = True
        self.manager.save(self)
        event = StreamResponse(
            artifact_update=TaskArtifactUpdateEvent(
                task_id=self.task.id,
                context_id=self.task.context_id,
                artifact=artifact,
                append=append,
                last_chunk=last_chunk,
            )
        )
        self.manager.notify(self, event)
        self._publish(event)

    async def set_reply(self, message: Message | None) -> None:
        if self.updated:
            raise InvalidParamsError("a handler cannot reply with a message after task updates")
        self.reply = message
        self._publish(StreamResponse(message=message))
        self._publish(None)
