"""Serving one A2A request with the task manager: each method of the protocol
mapped to the :class:`~sealwire.agent._tasks.TaskManager` call that answers it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Any

from sealwire.agent._tasks import Receipt, TaskManager
from sealwire.binding import PeerIdentity
from sealwire.codec import (
    ExtendedAgentCardNotConfiguredError,
    Method,
    Request,
    UnsupportedOperationError,
)
from sealwire.identity import VerifiedCard

__all__ = ["serve_with_tasks"]


async def serve_with_tasks(
    tasks: TaskManager,
    card: Callable[[], VerifiedCard],
    request: Request,
    peer: PeerIdentity,
    *,
    receipt: Receipt | None = None,
) -> AsyncGenerator[Any, None]:
    """Serve ``request`` from the verified ``peer`` with ``tasks`` (yields one result, or
    a stream); ``card`` gives the agent's card (asked for GetExtendedAgentCard only).
    ``receipt`` is written in the
    transaction that records the task a ``SendMessage`` creates or resumes."""
    params = request.params
    method = request.method
    if method is Method.SEND_MESSAGE:
        yield await tasks.send(params, peer, receipt=receipt)
    elif method is Method.SEND_STREAMING_MESSAGE:
        # aclosing: a caller that leaves the stream unsubscribes it now, not when collected
        async with contextlib.aclosing(tasks.stream(params, peer, receipt=receipt)) as events:
            async for event in events:
                yield event
    elif method is Method.GET_TASK:
        yield tasks.get(params.id, peer, params.history_length)
    elif method is Method.LIST_TASKS:
        yield tasks.list(params, peer)
    elif method is Method.CANCEL_TASK:
        yield await tasks.cancel(params.id, peer)
    elif method is Method.SUBSCRIBE_TO_TASK:
        async with contextlib.aclosing(tasks.subscribe(params.id, peer)) as events:
            async for event in events:
                yield event
    elif method is Method.GET_EXTENDED_AGENT_CARD:
        # spec §3.3.4: -32007 only when the card declares an extended card
        if card().card.get("capabilities", {}).get("extendedAgentCard"):
            raise ExtendedAgentCardNotConfiguredError("this agent has no extended card")
        raise UnsupportedOperationError("this agent's card declares no extended card")
    elif method is Method.CREATE_TASK_PUSH_NOTIFICATION_CONFIG:
        yield tasks.create_push_config(params, peer)
    elif method is Method.GET_TASK_PUSH_NOTIFICATION_CONFIG:
        yield tasks.get_push_config(params.task_id, params.id, peer)
    elif method is Method.LIST_TASK_PUSH_NOTIFICATION_CONFIGS:
        yield tasks.list_push_configs(params, peer)
    elif method is Method.DELETE_TASK_PUSH_NOTIFICATION_CONFIG:
        tasks.delete_push_config(params.task_id, params.id, peer)
        yield None
    else:
        raise UnsupportedOperationError(f"{method.value} is not supported")
