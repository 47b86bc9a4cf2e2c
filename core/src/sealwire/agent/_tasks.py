"""The serving side of A2A tasks: lifecycle, handlers, events, persistence.

Rules of the serving side (this module, the task manager, and the task runs,
records and listings of :mod:`sealwire.agent._task_run`,
:mod:`sealwire.agent._task_records` and :mod:`sealwire.agent._task_listing`):

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
import contextlib
import datetime
import logging
import uuid
from collections.abc import AsyncGenerator, Callable

import attrs

from sealwire.agent._push import MAX_PUSH_CONFIGS, PushSender, check_webhook
from sealwire.agent._task_listing import (
    DEFAULT_PAGE_SIZE,
    check_list_request,
    cut_history,
    page_token,
    read_page_token,
    sort_key,
    to_instant,
)
from sealwire.agent._task_records import TASKS_NAMESPACE, TaskRecord, check_task_id
from sealwire.agent._task_run import (
    INTERRUPTED,
    Handler,
    TaskContext,
    TaskRun,
    agent_message,
    now,
)
from sealwire.binding import PeerIdentity
from sealwire.codec import (
    InvalidParamsError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from sealwire.model import (
    AuthenticationInfo,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    SendMessageRequest,
    SendMessageResponse,
    StreamResponse,
    Task,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
)
from sealwire.store import StateStore, StoreTransaction

__all__ = ["Receipt", "TaskManager"]

log = logging.getLogger(__name__)

MAX_LIVE_TASKS = 10_000
"""Tasks kept in memory with their subscribers; older finished ones are read from the store."""


Receipt = Callable[[StoreTransaction, str], None]
"""Written with the first record of the task a request creates or resumes: called
as ``receipt(tx, task_id)`` inside that store transaction. The mailbox router
passes one that deletes the request's inbox entry and records the answer it
owes, so a crash either leaves the request to serve again or the task to answer
for, never neither and never both."""


def _plain_working(event: StreamResponse) -> bool:
    """A status update to WORKING saying nothing more (what starting a handler publishes)."""
    update = event.status_update
    return (
        update is not None
        and update.status.state is TaskState.WORKING
        and update.status.message is None
    )


class TaskManager:
    """Runs handlers for incoming messages and answers the A2A task methods."""

    def __init__(
        self, store: StateStore, handler: Handler | None = None, *, push: PushSender | None = None
    ) -> None:
        self.store = store
        self.handler = handler
        self.push = push
        """Calls the tasks' webhooks; None (or a policy that disables it): no push."""
        self._runs: dict[str, TaskRun] = {}

    def save(
        self, run: TaskRun, receipt: Receipt | None = None, *, task: Task | None = None
    ) -> None:
        """Write the task's record (with what ``receipt`` writes, in one transaction);
        ``task``: the task to write instead of ``run.task`` (a state it is about to take)."""
        if task is None:
            task, run.ahead = run.task, None  # the store follows memory again
        record = TaskRecord(owner=run.owner, task=task, push=run.push).to_bytes()
        if receipt is None:
            self.store.put(TASKS_NAMESPACE, task.id, record)
            return
        with self.store.transaction() as tx:
            tx.put(TASKS_NAMESPACE, task.id, record)
            receipt(tx, task.id)

    def _load(self, task_id: str, owner: str, field: str = "id") -> TaskRun:
        check_task_id(task_id, field)
        run = self._runs.get(task_id)
        if run is None:
            raw = self.store.get(TASKS_NAMESPACE, task_id)
            if raw is not None:
                record = TaskRecord.from_bytes(raw)
                run = TaskRun(manager=self, owner=record.owner, task=record.task, push=record.push)
        if run is None or run.owner != owner:
            raise TaskNotFoundError(f"task {task_id} not found")
        return run

    def _remember(self, run: TaskRun) -> None:
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
    ) -> TaskRun:
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
                status=TaskStatus(state=TaskState.SUBMITTED, timestamp=now()),
                history=(message,),
            )
            run = TaskRun(manager=self, owner=peer.agent_id, task=task)
        if webhook is not None:
            self._add_webhook(run, webhook)
        if self.handler is None:
            self.save(run, receipt)
        else:
            # Its worker's first step is WORKING: the first record holds that state
            # already (a restart resumes SUBMITTED and WORKING alike), one write fewer.
            run.ahead = _working(run.task)
            self.save(run, receipt, task=run.ahead)
        self._remember(run)
        run.subscribe()
        run.worker = asyncio.create_task(self._work(run, message, peer))
        return run

    def _follow_up(self, run: TaskRun, message: Message, receipt: Receipt | None) -> TaskRun:
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
        run.subscribe()
        return run

    async def _work(self, run: TaskRun, message: Message, peer: PeerIdentity) -> None:
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
            run.unsubscribe(queue)
        if run.reply is not None:
            return SendMessageResponse(message=run.reply)
        history = config.history_length if config is not None else None
        return SendMessageResponse(task=cut_history(run.task, history))

    async def stream(
        self, params: SendMessageRequest, peer: PeerIdentity, *, receipt: Receipt | None = None
    ) -> AsyncGenerator[StreamResponse, None]:
        """``SendStreamingMessage``: the task, then every event until it settles.
        ``receipt`` is written with the task's first record."""
        run = self._start(params, peer, receipt)
        submitted = run.task  # the worker has not run yet: this is the task as created
        queue = run.subscribers[-1]
        try:  # however the caller leaves (at any yield, or cancelled), it unsubscribes
            held: list[StreamResponse] = []
            first = await queue.get()
            if first is not None and _plain_working(first):
                # the handler may yet answer with a message: then the stream is that
                # message alone (spec §3.1.2), so the task waits for the next event
                held.append(first)
                first = await queue.get()
            if first is not None and first.message is not None:
                yield first  # the handler answered with a message: no task
                return
            yield StreamResponse(task=submitted)
            for event in held:
                yield event
            if first is not None:
                yield first
                while (later := await queue.get()) is not None:
                    yield later
        finally:
            run.unsubscribe(queue)

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
            queue = run.subscribe()
            self._remember(run)
            run.worker = asyncio.create_task(self._work(run, run.task.history[-1], peer))
            try:
                while await queue.get() is not None:
                    pass
            finally:
                run.unsubscribe(queue)
        elif not run.settled():  # its handler is running in this process
            queue = run.subscribe()
            try:
                while not run.settled() and await queue.get() is not None:
                    pass
            finally:
                run.unsubscribe(queue)
        if run.reply is not None:
            return SendMessageResponse(message=run.reply)
        return SendMessageResponse(task=run.task)

    def get(self, task_id: str, peer: PeerIdentity, history_length: int | None = None) -> Task:
        """``GetTask``: the task as it is now, history cut to ``history_length``."""
        return cut_history(self._load(task_id, peer.agent_id).task, history_length)

    def list(self, request: ListTasksRequest, peer: PeerIdentity) -> ListTasksResponse:
        """``ListTasks`` (spec §3.1.4): a page of this peer's tasks, most recently
        updated first, filtered by context, state and last update; ``nextPageToken``
        resumes after the page's last task, ``totalSize`` counts every match."""
        check_list_request(request)
        after = None if request.page_token is None else read_page_token(request.page_token)
        since = (
            None
            if request.status_timestamp_after is None
            else to_instant(request.status_timestamp_after)
        )
        matches: list[tuple[tuple[datetime.datetime, str], Task]] = []
        for task_id in self.store.keys(TASKS_NAMESPACE):
            with contextlib.suppress(TaskNotFoundError, InvalidParamsError):
                task = self._load(task_id, peer.agent_id).task
                if request.context_id is not None and task.context_id != request.context_id:
                    continue
                if request.status is not None and task.status.state is not request.status:
                    continue
                key = sort_key(task)
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
            tasks.append(cut_history(task, request.history_length))
        return ListTasksResponse(
            tasks=tuple(tasks),
            next_page_token=page_token(page[-1][0]) if more and page else "",
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

    async def subscribe(
        self, task_id: str, peer: PeerIdentity
    ) -> AsyncGenerator[StreamResponse, None]:
        """``SubscribeToTask``: the task now, then its events until it settles."""
        run = self._load(task_id, peer.agent_id)
        if run.state.is_terminal:
            raise UnsupportedOperationError(f"task {task_id} is {run.state.name}")
        if run.settled():  # interrupted: the stream ends there, as a sent one does
            yield StreamResponse(task=run.task)
            return
        queue = run.subscribe()
        try:  # however the caller leaves (at any yield, or cancelled), it unsubscribes
            yield StreamResponse(task=run.task)
            while (event := await queue.get()) is not None:
                yield event
        finally:
            run.unsubscribe(queue)

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

    def notify(self, run: TaskRun, event: StreamResponse) -> None:
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

    def _add_webhook(self, run: TaskRun, config: TaskPushNotificationConfig) -> None:
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


def _working(task: Task) -> Task:
    """``task`` as its worker's first step makes it: WORKING, saying nothing more."""
    return attrs.evolve(task, status=TaskStatus(state=TaskState.WORKING, timestamp=now()))


def _shown(config: TaskPushNotificationConfig) -> TaskPushNotificationConfig:
    """A config as answers show it: without its authentication credentials."""
    if config.authentication is None or config.authentication.credentials is None:
        return config
    return attrs.evolve(config, authentication=AuthenticationInfo(config.authentication.scheme))
