"""The serving side of A2A tasks: lifecycle, handlers, events, persistence.

Rules of this file:

* A task moves SUBMITTED -> WORKING -> a terminal state (COMPLETED, FAILED,
  CANCELED, REJECTED) or an interrupted one (INPUT_REQUIRED, AUTH_REQUIRED);
  a new message to an interrupted task resumes it (its handler runs again). A
  message to a task still open (SUBMITTED, WORKING, its handler running) is a
  follow-up: recorded in its history and handed to the running handler
  (:meth:`TaskContext.next_message`). Nothing leaves a terminal state, and a
  message to a terminal task is refused (-32004). A message naming a task and
  another context is refused (spec §3.4.3).
* Only the agent that created a task may read, cancel or subscribe to it;
  to anyone else it does not exist (no existence oracle).
* Every change of a task is written to the store before the event that
  announces it is delivered.
* A task's push-notification configs (its webhooks, A2A v1.0 §3.1.7) are kept in
  its record, so they survive a restart; each status and artifact update, once
  written, is handed to the :class:`~sealwire.agent._push.PushSender`, which never
  blocks the task. Only the task's owner sees or changes them; answers never show a
  config's ``authentication.credentials`` (write-only, a secret).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import attrs

from sealwire.agent._push import MAX_PUSH_CONFIGS, PushSender, check_webhook
from sealwire.binding import PeerIdentity
from sealwire.codec import (
    InvalidParamsError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
    from_json,
    to_json,
)
from sealwire.model import (
    Artifact,
    AuthenticationInfo,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SendMessageResponse,
    StreamResponse,
    Task,
    TaskArtifactUpdateEvent,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from sealwire.store import StateStore, StoreTransaction

__all__ = ["Handler", "Receipt", "TaskContext", "TaskManager", "agent_message"]

log = logging.getLogger(__name__)

TASKS_NAMESPACE = "a2a.tasks"
MAX_LIVE_TASKS = 10_000
"""Tasks kept in memory with their subscribers; older finished ones are read from the store."""
MAX_SUBSCRIBER_BACKLOG = 1024
"""Events queued for one slow subscriber before it is dropped."""

MAX_TASK_ID_LENGTH = 1024
"""Characters in a task id a caller may name: the store's key limit (longer ones are
not ours, and must fail as invalid params before reaching the store)."""
DEFAULT_PAGE_SIZE = 50
"""Tasks in a ListTasks page when the caller names no ``pageSize`` (spec §3.1.4)."""
MAX_PAGE_SIZE = 100
"""The largest ``pageSize`` a caller may ask for (spec §3.1.4: 1 to 100)."""
MAX_FOLLOW_UPS = 64
"""Follow-up messages queued for a running handler that has not read them: past
this, more are refused rather than held in memory without end."""
MAX_PAGE_TOKEN = 2 * MAX_TASK_ID_LENGTH
"""Characters of a ``pageToken`` looked at: ours encode a timestamp and a task id."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

INTERRUPTED = frozenset({TaskState.INPUT_REQUIRED, TaskState.AUTH_REQUIRED})


def _now() -> str:
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

Receipt = Callable[[StoreTransaction, str], None]
"""Written with the first record of the task a request creates or resumes: called
as ``receipt(tx, task_id)`` inside that store transaction. The mailbox router
passes one that deletes the request's inbox entry and records the answer it
owes, so a crash either leaves the request to serve again or the task to answer
for, never neither and never both."""


class TaskContext:
    """What a handler sees of the task it serves, and how it reports on it."""

    def __init__(self, run: _TaskRun, message: Message, peer: PeerIdentity) -> None:
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
class _TaskRun:
    manager: TaskManager
    owner: str
    task: Task
    reply: Message | None = None
    worker: asyncio.Task[None] | None = None
    subscribers: list[asyncio.Queue[StreamResponse | None]] = attrs.Factory(list)
    updated: bool = False
    announced: bool = False  # the task went out before it settled (returnImmediately)
    inbox: asyncio.Queue[Message] = attrs.Factory(lambda: asyncio.Queue(MAX_FOLLOW_UPS))
    push: tuple[TaskPushNotificationConfig, ...] = ()  # its webhooks, kept in its record

    @property
    def state(self) -> TaskState:
        return self.task.status.state

    def settled(self) -> bool:
        return self.reply is not None or self.state.is_terminal or self.state in INTERRUPTED

    def finished(self) -> bool:
        """Settled and its worker done: it may be forgotten (the store keeps it)."""
        return self.settled() and self.worker is not None and self.worker.done()

    def _publish(self, event: StreamResponse | None) -> None:
        for queue in list(self.subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self.subscribers.remove(queue)

    async def set_state(
        self, state: TaskState, message: Message | None, *, by_handler: bool = True
    ) -> None:
        if self.state.is_terminal:
            raise TaskNotCancelableError(f"task {self.task.id} is already {self.state.name}")
        history = self.task.history + ((message,) if message is not None else ())
        status = TaskStatus(state=state, message=message, timestamp=_now())
        self.task = attrs.evolve(self.task, status=status, history=history)
        self.updated = self.updated or by_handler
        self.manager.save(self)
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


def check_task_id(task_id: str, field: str = "id") -> None:
    """Raise InvalidParamsError unless ``task_id`` could name a task: 1 to
    :data:`MAX_TASK_ID_LENGTH` characters of UTF-8 text without control characters."""
    if not task_id:
        raise InvalidParamsError("a task id must not be empty", field=field)
    if len(task_id) > MAX_TASK_ID_LENGTH:
        raise InvalidParamsError(
            f"a task id has at most {MAX_TASK_ID_LENGTH} characters", field=field
        )
    if _CONTROL.search(task_id):
        raise InvalidParamsError("a task id must not hold control characters", field=field)
    try:
        task_id.encode()
    except UnicodeEncodeError:
        raise InvalidParamsError("a task id must be UTF-8 text", field=field) from None


def _instant(timestamp: str) -> datetime.datetime:
    """An RFC 3339 timestamp (already checked by the codec) as an aware datetime."""
    text = timestamp.replace("z", "Z").replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python reads at most microseconds: cut nanoseconds
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    return datetime.datetime.fromisoformat(text)


def _sort_key(task: Task) -> tuple[datetime.datetime, str]:
    """Most recently updated first (then by id, so the order is total)."""
    if task.status.timestamp is None:
        return (datetime.datetime.min.replace(tzinfo=datetime.UTC), task.id)
    return (_instant(task.status.timestamp), task.id)


def _page_token(key: tuple[datetime.datetime, str]) -> str:
    """The opaque token resuming a listing after the task whose sort key is ``key``."""
    raw = json.dumps([key[0].isoformat(), key[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _read_page_token(token: str) -> tuple[datetime.datetime, str]:
    bad = InvalidParamsError("invalid pageToken", field="pageToken")
    if len(token) > MAX_PAGE_TOKEN:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        when, task_id = json.loads(raw)
        instant = datetime.datetime.fromisoformat(when)
    except (binascii.Error, ValueError, TypeError, RecursionError):
        raise bad from None
    if not isinstance(task_id, str) or instant.tzinfo is None:
        raise bad
    return instant, task_id


def _check_list_request(request: ListTasksRequest) -> None:
    if request.page_size is not None and not 1 <= request.page_size <= MAX_PAGE_SIZE:
        raise InvalidParamsError(
            f"pageSize must be between 1 and {MAX_PAGE_SIZE}", field="pageSize"
        )
    if request.history_length is not None and request.history_length < 0:
        raise InvalidParamsError("historyLength must not be negative", field="historyLength")


def _plain_working(event: StreamResponse) -> bool:
    """A status update to WORKING saying nothing more (what starting a handler publishes)."""
    update = event.status_update
    return (
        update is not None
        and update.status.state is TaskState.WORKING
        and update.status.message is None
    )


def _cut_history(task: Task, history_length: int | None) -> Task:
    """The task with only its last ``history_length`` messages (all when ``None``)."""
    if history_length is None:
        return task
    if history_length < 0:
        raise InvalidParamsError("historyLength must not be negative")
    kept = task.history[max(0, len(task.history) - history_length) :] if history_length else ()
    return attrs.evolve(task, history=kept)


class TaskManager:
    """Runs handlers for incoming messages and answers the A2A task methods."""

    def __init__(
        self, store: StateStore, handler: Handler | None = None, *, push: PushSender | None = None
    ) -> None:
        self.store = store
        self.handler = handler
        self.push = push
        """Calls the tasks' webhooks; None (or a policy that disables it): no push."""
        self._runs: dict[str, _TaskRun] = {}

    def save(self, run: _TaskRun, receipt: Receipt | None = None) -> None:
        """Write the task's record (with what ``receipt`` writes, in one transaction)."""
        content: dict[str, Any] = {"owner": run.owner, "task": to_json(run.task)}
        if run.push:
            content["push"] = [to_json(config) for config in run.push]
        record = json.dumps(content).encode()
        if receipt is None:
            self.store.put(TASKS_NAMESPACE, run.task.id, record)
            return
        with self.store.transaction() as tx:
            tx.put(TASKS_NAMESPACE, run.task.id, record)
            receipt(tx, run.task.id)

    def _load(self, task_id: str, owner: str, field: str = "id") -> _TaskRun:
        check_task_id(task_id, field)
        run = self._runs.get(task_id)
        if run is None:
            raw = self.store.get(TASKS_NAMESPACE, task_id)
            if raw is not None:
                record = json.loads(raw)
                run = _TaskRun(
                    manager=self,
                    owner=record["owner"],
                    task=from_json(Task, record["task"]),
                    push=tuple(
                        from_json(TaskPushNotificationConfig, c) for c in record.get("push", ())
                    ),
                )
        if run is None or run.owner != owner:
            raise TaskNotFoundError(f"task {task_id} not found")
        return run

    def _remember(self, run: _TaskRun) -> None:
        """Keep ``run`` in memory, forgetting the oldest finished task past the bound.

        The scan stops at the first finished task from the oldest end (no copy of
        the whole table), so a task costs the same after a million as after ten.
        """
        self._runs[run.task.id] = run
        while len(self._runs) > MAX_LIVE_TASKS:
            done = next((task_id for task_id, old in self._runs.items() if old.finished()), None)
            if done is None:
                return  # every kept task still runs: over the bound until one ends
            del self._runs[done]

    def _start(
        self, params: SendMessageRequest, peer: PeerIdentity, receipt: Receipt | None = None
    ) -> _TaskRun:
        message = params.message
        webhook = self._webhook_of(params)
        if message.task_id:
            run = self._load(message.task_id, peer.agent_id, "message.taskId")
            if message.context_id not in (None, run.task.context_id):
                raise InvalidParamsError(
                    "message.contextId is not the task's context", field="message.contextId"
                )
            message = attrs.evolve(message, context_id=run.task.context_id)
            if run.state not in INTERRUPTED:
                if webhook is not None:
                    self._add_webhook(run, webhook)
                return self._follow_up(run, message, receipt)
            run.task = attrs.evolve(run.task, history=(*run.task.history, message))
        else:
            task_id, context_id = str(uuid.uuid4()), message.context_id or str(uuid.uuid4())
            message = attrs.evolve(message, task_id=task_id, context_id=context_id)
            task = Task(
                id=task_id,
                context_id=context_id,
                status=TaskStatus(state=TaskState.SUBMITTED, timestamp=_now()),
                history=(message,),
            )
            run = _TaskRun(manager=self, owner=peer.agent_id, task=task)
        if webhook is not None:
            self._add_webhook(run, webhook)
        self.save(run, receipt)
        self._remember(run)
        queue: asyncio.Queue[StreamResponse | None] = asyncio.Queue(MAX_SUBSCRIBER_BACKLOG)
        run.subscribers.append(queue)
        run.worker = asyncio.create_task(self._work(run, message, peer))
        return run

    def _follow_up(self, run: _TaskRun, message: Message, receipt: Receipt | None) -> _TaskRun:
        """A message to a task still open: into its history and its handler's inbox."""
        if run.state.is_terminal or run.worker is None or run.worker.done():
            raise UnsupportedOperationError(
                f"task {run.task.id} is {run.state.name} and does not take new messages"
            )
        if run.inbox.full():
            raise UnsupportedOperationError(f"task {run.task.id} has too many unread messages")
        run.task = attrs.evolve(run.task, history=(*run.task.history, message))
        self.save(run, receipt)
        run.inbox.put_nowait(message)
        queue: asyncio.Queue[StreamResponse | None] = asyncio.Queue(MAX_SUBSCRIBER_BACKLOG)
        run.subscribers.append(queue)
        return run

    async def _work(self, run: _TaskRun, message: Message, peer: PeerIdentity) -> None:
        context = TaskContext(run, message, peer)
        try:
            if self.handler is None:
                raise UnsupportedOperationError("this agent has no handler for messages")
            await run.set_state(TaskState.WORKING, None, by_handler=False)
            await self.handler(context)
            if run.reply is not None and run.announced:
                # the caller holds the task already: the reply ends it
                await run.set_state(TaskState.COMPLETED, run.reply, by_handler=False)
            elif not run.settled():
                await run.set_state(TaskState.COMPLETED, None, by_handler=False)
        except asyncio.CancelledError:
            if not run.state.is_terminal:
                await run.set_state(TaskState.CANCELED, None, by_handler=False)
        except Exception as exc:
            # The operator gets the message and the traceback; the peer only the fact.
            log.exception(
                "handler failed for task %s: %s: %s",
                run.task.id,
                type(exc).__name__,
                exc,
                extra={"task_id": run.task.id},
            )
            if run.reply is None and not run.state.is_terminal:
                await run.set_state(
                    TaskState.FAILED,
                    agent_message(
                        "the agent failed to handle the request",
                        task_id=run.task.id,
                        context_id=run.task.context_id,
                    ),
                )

    async def send(
        self, params: SendMessageRequest, peer: PeerIdentity, *, receipt: Receipt | None = None
    ) -> SendMessageResponse:
        """``SendMessage``: run until the task settles and return it (or the reply
        message); with ``returnImmediately``, return the task as soon as it exists.
        ``receipt`` is written with the task's first record."""
        run = self._start(params, peer, receipt)
        queue = run.subscribers[-1]
        config = params.configuration
        try:
            if config is None or not config.return_immediately:
                while await queue.get() is not None:
                    pass
            elif not run.settled():
                run.announced = True
        finally:
            with contextlib.suppress(ValueError):
                run.subscribers.remove(queue)
        if run.reply is not None:
            return SendMessageResponse(message=run.reply)
        history = config.history_length if config is not None else None
        return SendMessageResponse(task=_cut_history(run.task, history))

    async def stream(
        self, params: SendMessageRequest, peer: PeerIdentity, *, receipt: Receipt | None = None
    ) -> AsyncIterator[StreamResponse]:
        """``SendStreamingMessage``: the task, then every event until it settles.
        ``receipt`` is written with the task's first record."""
        run = self._start(params, peer, receipt)
        submitted = run.task  # the worker has not run yet: this is the task as created
        queue = run.subscribers[-1]
        held: list[StreamResponse] = []
        first = await queue.get()
        if first is not None and _plain_working(first):
            # the handler may yet answer with a message: then the stream is that
            # message alone (spec §3.1.2), so the task waits for the next event
            held.append(first)
            first = await queue.get()
        if first is not None and first.message is not None:
            yield first  # the handler answered with a message: no task
            with contextlib.suppress(ValueError):
                run.subscribers.remove(queue)
            return
        yield StreamResponse(task=submitted)
        for event in held:
            yield event
        if first is not None:
            yield first
            async for event in self._drain(run, queue):
                yield event

    async def _drain(
        self, run: _TaskRun, queue: asyncio.Queue[StreamResponse | None]
    ) -> AsyncIterator[StreamResponse]:
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            with contextlib.suppress(ValueError):
                run.subscribers.remove(queue)

    async def resume(self, task_id: str, peer: PeerIdentity) -> SendMessageResponse:
        """The answer to the request that created (or resumed) ``task_id`` before a restart.

        A settled task is answered as it is. One a restart interrupted (SUBMITTED
        or WORKING in the store; a reply message is not kept, so a task answered
        by one is among them) has its handler run again on the message that
        started it, in the same task: no second task, the answer once it settles.
        """
        run = self._load(task_id, peer.agent_id)
        if not run.settled() and (run.worker is None or run.worker.done()):
            if not run.task.history:
                raise TaskNotFoundError(f"task {task_id} has no message to resume")
            queue: asyncio.Queue[StreamResponse | None] = asyncio.Queue(MAX_SUBSCRIBER_BACKLOG)
            run.subscribers.append(queue)
            self._remember(run)
            run.worker = asyncio.create_task(self._work(run, run.task.history[-1], peer))
            try:
                while await queue.get() is not None:
                    pass
            finally:
                with contextlib.suppress(ValueError):
                    run.subscribers.remove(queue)
        elif not run.settled():  # its handler is running in this process
            queue = asyncio.Queue(MAX_SUBSCRIBER_BACKLOG)
            run.subscribers.append(queue)
            try:
                while not run.settled() and await queue.get() is not None:
                    pass
            finally:
                with contextlib.suppress(ValueError):
                    run.subscribers.remove(queue)
        if run.reply is not None:
            return SendMessageResponse(message=run.reply)
        return SendMessageResponse(task=run.task)

    def get(self, task_id: str, peer: PeerIdentity, history_length: int | None = None) -> Task:
        """``GetTask``: the task as it is now, history cut to ``history_length``."""
        return _cut_history(self._load(task_id, peer.agent_id).task, history_length)

    def list(self, request: ListTasksRequest, peer: PeerIdentity) -> ListTasksResponse:
        """``ListTasks`` (spec §3.1.4): a page of this peer's tasks, most recently
        updated first, filtered by context, state and last update; ``nextPageToken``
        resumes after the page's last task, ``totalSize`` counts every match."""
        _check_list_request(request)
        after = None if request.page_token is None else _read_page_token(request.page_token)
        since = (
            None
            if request.status_timestamp_after is None
            else _instant(request.status_timestamp_after)
        )
        matches: list[tuple[tuple[datetime.datetime, str], Task]] = []
        for task_id in self.store.keys(TASKS_NAMESPACE):
            with contextlib.suppress(TaskNotFoundError, InvalidParamsError):
                task = self._load(task_id, peer.agent_id).task
                if request.context_id is not None and task.context_id != request.context_id:
                    continue
                if request.status is not None and task.status.state is not request.status:
                    continue
                key = _sort_key(task)
                if since is not None and (task.status.timestamp is None or key[0] < since):
                    continue
                matches.append((key, task))
        matches.sort(key=lambda match: match[0], reverse=True)
        start = 0 if after is None else sum(1 for key, _ in matches if key >= after)
        size = request.page_size or DEFAULT_PAGE_SIZE
        page = matches[start : start + size]
        more = start + size < len(matches)
        tasks = []
        for _, task in page:
            if not request.include_artifacts:
                task = attrs.evolve(task, artifacts=())
            tasks.append(_cut_history(task, request.history_length))
        return ListTasksResponse(
            tasks=tuple(tasks),
            next_page_token=_page_token(page[-1][0]) if more and page else "",
            page_size=size,
            total_size=len(matches),
        )

    async def cancel(self, task_id: str, peer: PeerIdentity) -> Task:
        """``CancelTask``: stop the handler; a finished task cannot be canceled."""
        run = self._load(task_id, peer.agent_id)
        if run.state.is_terminal:
            raise TaskNotCancelableError(f"task {task_id} is already {run.state.name}")
        if run.worker is not None and not run.worker.done():
            run.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run.worker
        if not run.state.is_terminal:
            await run.set_state(TaskState.CANCELED, None)
        return run.task

    async def subscribe(self, task_id: str, peer: PeerIdentity) -> AsyncIterator[StreamResponse]:
        """``SubscribeToTask``: the task now, then its events until it settles."""
        run = self._load(task_id, peer.agent_id)
        if run.state.is_terminal:
            raise UnsupportedOperationError(f"task {task_id} is {run.state.name}")
        if run.settled():  # interrupted: the stream ends there, as a sent one does
            yield StreamResponse(task=run.task)
            return
        queue: asyncio.Queue[StreamResponse | None] = asyncio.Queue(MAX_SUBSCRIBER_BACKLOG)
        run.subscribers.append(queue)
        yield StreamResponse(task=run.task)
        async for event in self._drain(run, queue):
            yield event

    # -- push notifications (spec §3.1.7-3.1.10) ------------------------------------------

    def check_push(self) -> PushSender:
        """The sender, or -32003 with the reason when this agent does not call webhooks."""
        if self.push is None:
            raise PushNotificationNotSupportedError("push notifications are not supported")
        if not self.push.policy.enabled:
            raise PushNotificationNotSupportedError(
                f"push notifications are disabled: {self.push.policy.reason}"
            )
        return self.push

    def notify(self, run: _TaskRun, event: StreamResponse) -> None:
        """Hand a written update of ``run`` to its webhooks (never blocks)."""
        if run.push and self.push is not None:
            self.push.notify(run.task.id, run.push, event)

    def _webhook_of(self, params: SendMessageRequest) -> TaskPushNotificationConfig | None:
        """The webhook a ``SendMessage`` names in its configuration, checked."""
        config = params.configuration
        webhook = None if config is None else config.task_push_notification_config
        if webhook is not None:
            field = "configuration.taskPushNotificationConfig."
            check_webhook(webhook, self.check_push().policy, field)
            if webhook.id is not None:
                check_task_id(webhook.id, "configuration.taskPushNotificationConfig.id")
        return webhook

    def _add_webhook(self, run: _TaskRun, config: TaskPushNotificationConfig) -> None:
        """Add (or replace, by id) a webhook of ``run``; the caller saves the record."""
        config = attrs.evolve(config, task_id=run.task.id, id=config.id or str(uuid.uuid4()))
        kept = tuple(c for c in run.push if c.id != config.id)
        if len(kept) >= MAX_PUSH_CONFIGS:
            raise InvalidParamsError(f"a task has at most {MAX_PUSH_CONFIGS} webhooks")
        run.push = (*kept, config)

    def create_push_config(
        self, config: TaskPushNotificationConfig, peer: PeerIdentity
    ) -> TaskPushNotificationConfig:
        """``CreateTaskPushNotificationConfig``: add (or replace, same id) a webhook of
        one of the caller's tasks; answers it with the id it has."""
        sender = self.check_push()
        run = self._load(config.task_id or "", peer.agent_id, "taskId")
        check_webhook(config, sender.policy)
        if config.id is not None:
            check_task_id(config.id, "id")
        self._add_webhook(run, config)
        self.save(run)
        return _shown(run.push[-1])

    def get_push_config(
        self, task_id: str, config_id: str, peer: PeerIdentity
    ) -> TaskPushNotificationConfig:
        """``GetTaskPushNotificationConfig``; an unknown config is not found (-32001)."""
        self.check_push()
        run = self._load(task_id, peer.agent_id, "taskId")
        check_task_id(config_id, "id")
        for config in run.push:
            if config.id == config_id:
                return _shown(config)
        raise TaskNotFoundError(f"task {task_id} has no push config {config_id}")

    def list_push_configs(
        self, request: ListTaskPushNotificationConfigsRequest, peer: PeerIdentity
    ) -> ListTaskPushNotificationConfigsResponse:
        """``ListTaskPushNotificationConfigs``: the task's webhooks, oldest first, in
        pages of ``pageSize`` (0: all); ``nextPageToken`` resumes after a page."""
        self.check_push()
        run = self._load(request.task_id, peer.agent_id, "taskId")
        if request.page_size < 0:
            raise InvalidParamsError("pageSize must not be negative", field="pageSize")
        start = 0
        if request.page_token is not None:
            if not request.page_token.isdigit() or len(request.page_token) > 4:
                raise InvalidParamsError("invalid pageToken", field="pageToken")
            start = int(request.page_token)
        end = len(run.push) if request.page_size == 0 else start + request.page_size
        page = run.push[start:end]
        return ListTaskPushNotificationConfigsResponse(
            configs=tuple(_shown(config) for config in page),
            next_page_token=str(end) if end < len(run.push) else None,
        )

    def delete_push_config(self, task_id: str, config_id: str, peer: PeerIdentity) -> None:
        """``DeleteTaskPushNotificationConfig``: idempotent (an unknown config id is
        no error; an unknown task is)."""
        self.check_push()
        run = self._load(task_id, peer.agent_id, "taskId")
        check_task_id(config_id, "id")
        kept = tuple(config for config in run.push if config.id != config_id)
        if kept != run.push:
            run.push = kept
            self.save(run)

    async def close(self) -> None:
        """Cancel running handlers (their tasks end CANCELED)."""
        workers = [r.worker for r in self._runs.values() if r.worker and not r.worker.done()]
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker


def _shown(config: TaskPushNotificationConfig) -> TaskPushNotificationConfig:
    """A config as answers show it: without its authentication credentials."""
    if config.authentication is None or config.authentication.credentials is None:
        return config
    return attrs.evolve(config, authentication=AuthenticationInfo(config.authentication.scheme))
