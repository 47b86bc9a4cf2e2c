"""Calling a peer: ``send``, and ``task get|list|cancel|subscribe`` for its tasks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import attrs
import click

from sealwire.agent import Agent, RpcConnection, agent_message
from sealwire.cli._common import SITUATIONS, close_agent, home, read_card
from sealwire.cli.output import ExitCode, emit, note, state, waiting
from sealwire.codec import A2AError, Method, to_json
from sealwire.config import open_agent
from sealwire.identity import VerifiedCard
from sealwire.model import (
    GetTaskRequest,
    Message,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskState,
)
from sealwire.policy import Decision, Situation

__all__ = ["COMMANDS", "FAILED_STATES"]

T = TypeVar("T")

FAILED_STATES = frozenset({TaskState.FAILED, TaskState.REJECTED, TaskState.CANCELED})
"""A task that ends in one of these makes ``send`` exit 1."""

DEFAULT_SEND_TIMEOUT = 120.0
"""Seconds ``send`` waits for the task to settle: a handler that runs for minutes is
better followed with ``--stream`` or fetched later (``task get``)."""

DEFAULT_TASK_TIMEOUT = 60.0
"""Seconds a ``task`` command waits for the peer's answer (one request, no handler runs)."""


FIRST_POLL_SECONDS = 0.25
"""First pause before fetching again a task that a peer could not stream the end of."""

MAX_POLL_SECONDS = 5.0
"""Longest pause between two fetches of such a task: a request per 5 s is little load on
the peer, and the answer is printed at most 5 s late."""


@attrs.define
class _Progress:
    """What is known of a send so far: enough to say how to fetch its answer later."""

    task_id: str | None = None


def _situation_option(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    choices = ["auto", *sorted(SITUATIONS)] if default == "auto" else sorted(SITUATIONS)
    return click.option(
        "--situation",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="auto: a live session, and the peer's mailbox if it cannot be reached; "
        "the others force one situation.",
    )


async def _connect(
    agent: Agent, peer: VerifiedCard, situation: Situation | None, *, quiet: bool
) -> tuple[RpcConnection, Decision]:
    """The connection and the decision it follows (``None``, auto: the agent's own
    choice, with its fallback to the peer's mailbox, which is told to the user)."""
    route = await agent.route(peer, situation)
    if route.unreachable is not None and not quiet:
        live, exc = route.unreachable
        note(f"# {live.binding} cannot reach the peer ({exc}): trying {route.decision.binding}")
    return route.connection, route.decision


def _describe(decision: Decision) -> None:
    note(f"# via {decision.binding} ({decision.url}): {decision.reason}")
    for line in decision.session_description():
        note(f"# {line}")


def _state_of(event: StreamResponse) -> TaskState | None:
    if event.task is not None:
        return event.task.status.state
    if event.status_update is not None:
        return event.status_update.status.state
    return None


def _task_id_of(event: StreamResponse) -> str | None:
    if event.task is not None:
        return event.task.id
    if event.status_update is not None:
        return event.status_update.task_id
    if event.artifact_update is not None:
        return event.artifact_update.task_id
    return None


async def _stream(conn: RpcConnection, request: SendMessageRequest, progress: _Progress) -> int:
    last: TaskState | None = None
    async for event in conn.stream(Method.SEND_STREAMING_MESSAGE, request):
        progress.task_id = progress.task_id or _task_id_of(event)
        last = _state_of(event) or last
        print(json.dumps(to_json(event)), flush=True)
    return int(ExitCode.FAILED if last in FAILED_STATES else ExitCode.OK)


def _settled(task: Task) -> bool:
    return task.status.state.is_terminal or task.status.state.is_interrupted


async def _settle(conn: RpcConnection, request: SendMessageRequest, progress: _Progress) -> Any:
    """The task once it settles (or the peer's reply message): sent to return at once, so
    that its id is known while it runs, then followed until it settles."""
    response = await conn.call(Method.SEND_MESSAGE, request)
    if response.task is None:
        return response.message
    task: Task = response.task
    progress.task_id = task.id
    if _settled(task):
        return task
    # A peer that cannot subscribe (an A2A server behind a sidecar may not), or whose
    # task settled meanwhile, answers with an A2A error: the task is then fetched, and
    # fetched again with a growing pause until it settles (``--timeout`` bounds it).
    with contextlib.suppress(A2AError):
        subscription = SubscribeToTaskRequest(id=task.id)
        async for _event in conn.stream(Method.SUBSCRIBE_TO_TASK, subscription):
            pass
    pause = FIRST_POLL_SECONDS
    while True:
        task = await conn.call(Method.GET_TASK, GetTaskRequest(id=task.id))
        if _settled(task):
            return task
        await asyncio.sleep(pause)
        pause = min(pause * 2, MAX_POLL_SECONDS)


async def _send(
    agent: Agent,
    card: Any,
    text: str,
    situation: Situation | None,
    *,
    stream: bool,
    quiet: bool,
    progress: _Progress,
) -> int:
    try:
        async with agent:
            peer = agent.peer(card)
            with waiting(f"connecting to {peer.name or peer.identity.agent_id}"):
                conn, decision = await _connect(agent, peer, situation, quiet=quiet)
            if not quiet:
                _describe(decision)
            if stream:
                return await _stream(
                    conn, SendMessageRequest(message=agent_message(text, role=Role.USER)), progress
                )
            request = SendMessageRequest(
                message=agent_message(text, role=Role.USER),
                configuration=SendMessageConfiguration(return_immediately=True),
            )
            with waiting(f"waiting for the answer over {decision.binding}"):
                result = await _settle(conn, request, progress)
            print(json.dumps(to_json(result), indent=2), flush=True)
            if isinstance(result, Message):
                return int(ExitCode.OK)
            if result.status.state in FAILED_STATES and not quiet:
                note(f"# the task ended {result.status.state.name}")
            return int(ExitCode.FAILED if result.status.state in FAILED_STATES else ExitCode.OK)
    finally:
        await close_agent(agent)


def _later_command(peer_card: str, task_id: str) -> str:
    argv = ["sealwire", "--home", str(home()), "task", "get", peer_card, task_id]
    return shlex.join(argv)


@click.command()
@click.argument("peer_card")
@click.argument("text")
@_situation_option("auto")
@click.option("--stream", is_flag=True, help="Print each stream event (a JSON line) as it comes.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_SEND_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the task to settle.",
)
@click.option(
    "--quiet", "-q", is_flag=True, help="Do not print the binding, protocol and suite used."
)
def send(
    peer_card: str,
    text: str,
    situation: str,
    stream: bool,
    timeout: float,
    quiet: bool,
) -> None:
    """Send TEXT to the peer of PEER_CARD (a signed card file, or - for stdin) and print
    the task (A2A JSON) once it settles.

    On stderr: the binding, its URL, the reason, the protocol and suite used
    (--quiet hides them). Exits 1 when the task ends failed, rejected or
    canceled; 5 on --timeout, after printing the task id and the command that
    fetches it later.
    """
    card = read_card(peer_card)
    agent = open_agent(home(), state().registry)
    progress = _Progress()
    work = _send(
        agent,
        card,
        text,
        None if situation == "auto" else SITUATIONS[situation],
        stream=stream,
        quiet=quiet,
        progress=progress,
    )
    try:
        code = asyncio.run(asyncio.wait_for(work, timeout))
    except TimeoutError:
        if progress.task_id is not None:
            note(f"task {progress.task_id} has not settled; fetch it later with:")
            note(f"  {_later_command(peer_card, progress.task_id)}")
        raise TimeoutError(f"no answer within {timeout:g} s") from None
    if code:
        raise click.exceptions.Exit(code)


# -- task ------------------------------------------------------------------------------------


@click.group()
def task() -> None:
    """A peer's tasks: get, list, cancel, subscribe (A2A task methods)."""


async def _with_peer(
    peer_card: str, timeout: float, act: Callable[[Agent, VerifiedCard], Awaitable[T]]
) -> T:
    card = read_card(peer_card)
    agent = open_agent(home(), state().registry)

    async def run() -> T:
        async with agent:
            return await act(agent, agent.peer(card))

    try:
        return await asyncio.wait_for(run(), timeout)
    except TimeoutError:
        raise TimeoutError(f"no answer within {timeout:g} s") from None
    finally:
        await close_agent(agent)


timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TASK_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the peer's answer.",
)


@task.command("get")
@click.argument("peer_card")
@click.argument("task_id")
@click.option("--history", type=click.IntRange(min=0), help="At most this many history messages.")
@timeout_option
def task_get(peer_card: str, task_id: str, history: int | None, timeout: float) -> None:
    """Print the task TASK_ID of the peer (A2A JSON)."""

    async def act(agent: Agent, peer: VerifiedCard) -> Task:
        return await agent.get_task(peer, task_id, history_length=history)

    found = asyncio.run(_with_peer(peer_card, timeout, act))
    emit(to_json(found))


@task.command("list")
@click.argument("peer_card")
@click.option("--context", "context_id", help="Only the tasks of this context id.")
@timeout_option
def task_list(peer_card: str, context_id: str | None, timeout: float) -> None:
    """List this agent's tasks at the peer (A2A ListTasks; a table, or JSON with --json)."""
    from sealwire.cli.output import Table

    async def act(agent: Agent, peer: VerifiedCard) -> Any:
        return await agent.list_tasks(peer, context_id=context_id)

    listed = asyncio.run(_with_peer(peer_card, timeout, act))
    data = to_json(listed)
    rows = tuple(
        (t.id, t.context_id or "", t.status.state.name.lower().replace("_", "-"))
        for t in listed.tasks
    )
    emit(data, Table(title="tasks", columns=("task", "context", "state"), rows=rows))


@task.command("cancel")
@click.argument("peer_card")
@click.argument("task_id")
@timeout_option
def task_cancel(peer_card: str, task_id: str, timeout: float) -> None:
    """Cancel the task TASK_ID at the peer and print it (A2A JSON)."""

    async def act(agent: Agent, peer: VerifiedCard) -> Task:
        return await agent.cancel_task(peer, task_id)

    emit(to_json(asyncio.run(_with_peer(peer_card, timeout, act))))


@task.command("subscribe")
@click.argument("peer_card")
@click.argument("task_id")
@timeout_option
def task_subscribe(peer_card: str, task_id: str, timeout: float) -> None:
    """Print each event of the task TASK_ID (JSON lines) until it settles."""

    async def act(agent: Agent, peer: VerifiedCard) -> None:
        events: AsyncIterator[StreamResponse] = agent.subscribe_task(peer, task_id)
        async for event in events:
            print(json.dumps(to_json(event)), flush=True)

    asyncio.run(_with_peer(peer_card, timeout, act))


COMMANDS = (send, task)
