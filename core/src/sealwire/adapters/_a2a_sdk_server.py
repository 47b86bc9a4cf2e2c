"""Serve Sealwire requests with a2a-sdk's own request handling.

An agent written for ``a2a-sdk`` (an ``AgentExecutor`` behind the SDK's
``DefaultRequestHandler``, or any ``RequestHandler``) runs unchanged: the
dispatcher turns each verified A2A request a Sealwire binding delivered into
the SDK's protobuf request, calls the handler with the verified peer as
``ServerCallContext.user`` (and its agent id in ``state["headers"]["sealwire-peer"]``,
as the sidecar sends it), and turns its answer (or its stream of events, via
``a2a.utils.proto_utils.to_stream_response``) back. Both sides speak the same
proto3 JSON, so the conversion is the SDK's ``MessageToDict`` / ``ParseDict``
beside our :func:`~sealwire.codec.to_json` / :func:`~sealwire.codec.from_json`.

Use it with ``Agent(..., dispatcher=A2ASdkDispatcher.for_executor(executor, card))``,
where ``card()`` returns the agent's card (``lambda: agent.card.card``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from a2a import types as sdk
from a2a.auth.user import User
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import DefaultRequestHandler, RequestHandler
from a2a.server.tasks import InMemoryTaskStore, TaskStore
from a2a.utils.errors import JSON_RPC_ERROR_CODE_MAP
from a2a.utils.errors import A2AError as SdkError
from a2a.utils.proto_utils import to_stream_response
from google.protobuf.json_format import MessageToDict, ParseDict

from sealwire.adapters._sidecar import PEER_HEADER
from sealwire.binding import PeerIdentity
from sealwire.codec import (
    InternalRpcError,
    Method,
    Request,
    TaskNotFoundError,
    from_json,
    rpc_error_from,
    to_json,
)
from sealwire.model import SendMessageResponse, StreamResponse

__all__ = ["A2ASdkDispatcher", "SealwireUser"]

# Method -> (SDK request type, RequestHandler method, how its answer comes back)
_CALLS: dict[Method, tuple[Any, str, str]] = {
    Method.SEND_MESSAGE: (sdk.SendMessageRequest, "on_message_send", "send"),
    Method.SEND_STREAMING_MESSAGE: (sdk.SendMessageRequest, "on_message_send_stream", "stream"),
    Method.GET_TASK: (sdk.GetTaskRequest, "on_get_task", "task"),
    Method.LIST_TASKS: (sdk.ListTasksRequest, "on_list_tasks", "unary"),
    Method.CANCEL_TASK: (sdk.CancelTaskRequest, "on_cancel_task", "task"),
    Method.SUBSCRIBE_TO_TASK: (sdk.SubscribeToTaskRequest, "on_subscribe_to_task", "stream"),
    Method.CREATE_TASK_PUSH_NOTIFICATION_CONFIG: (
        sdk.TaskPushNotificationConfig, "on_create_task_push_notification_config", "unary"),
    Method.GET_TASK_PUSH_NOTIFICATION_CONFIG: (
        sdk.GetTaskPushNotificationConfigRequest, "on_get_task_push_notification_config",
        "unary"),
    Method.LIST_TASK_PUSH_NOTIFICATION_CONFIGS: (
        sdk.ListTaskPushNotificationConfigsRequest, "on_list_task_push_notification_configs",
        "unary"),
    Method.DELETE_TASK_PUSH_NOTIFICATION_CONFIG: (
        sdk.DeleteTaskPushNotificationConfigRequest, "on_delete_task_push_notification_config",
        "unary"),
    Method.GET_EXTENDED_AGENT_CARD: (
        sdk.GetExtendedAgentCardRequest, "on_get_extended_agent_card", "unary"),
}  # fmt: skip


class SealwireUser(User):
    """The peer a Sealwire binding verified, as a2a-sdk's authenticated user."""

    def __init__(self, peer: PeerIdentity) -> None:
        self.peer = peer

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        """The peer's agent id (the fingerprint of its signing key)."""
        return self.peer.agent_id


def _ours(cls: type, message: Any) -> Any:
    return from_json(cls, MessageToDict(message))


class A2ASdkDispatcher:
    """A Sealwire dispatcher backed by an a2a-sdk ``RequestHandler``."""

    def __init__(self, handler: RequestHandler | Callable[[], RequestHandler]) -> None:
        self._handler = handler if isinstance(handler, RequestHandler) else None
        self._factory = None if isinstance(handler, RequestHandler) else handler

    @classmethod
    def for_executor(
        cls, executor: Any, agent_card: Callable[[], Any], task_store: TaskStore | None = None
    ) -> A2ASdkDispatcher:
        """The SDK's ``DefaultRequestHandler`` around ``executor`` (an ``AgentExecutor``).

        ``agent_card`` returns the card the handler reports (our signed card's
        JSON works); it is read on the first request, once the agent is started.
        """
        store = task_store or InMemoryTaskStore()

        def build() -> RequestHandler:
            card = ParseDict(dict(agent_card()), sdk.AgentCard(), ignore_unknown_fields=True)
            return DefaultRequestHandler(agent_executor=executor, task_store=store,
                                         agent_card=card)  # fmt: skip

        return cls(build)

    @property
    def handler(self) -> RequestHandler:
        if self._handler is None:
            assert self._factory is not None
            self._handler = self._factory()
        return self._handler

    async def __call__(self, request: Request, peer: PeerIdentity) -> AsyncIterator[Any]:
        """Serve one verified request through the SDK handler."""
        if request.method not in _CALLS:
            raise InternalRpcError(f"no a2a-sdk handler for {request.method.value}")
        request_type, name, kind = _CALLS[request.method]
        params = ParseDict(to_json(request.params), request_type(), ignore_unknown_fields=True)
        # The sidecar's header too, so an executor written for either way reads the caller alike.
        state = {"headers": {PEER_HEADER.lower(): peer.agent_id},
                 "method": request.method.value, "request_id": request.id}  # fmt: skip
        context = ServerCallContext(user=SealwireUser(peer), state=state)
        call = getattr(self.handler, name)
        try:
            if kind == "stream":
                async for event in call(params, context):
                    yield _ours(StreamResponse, to_stream_response(event))
                return
            result = await call(params, context)
        except SdkError as exc:
            code = JSON_RPC_ERROR_CODE_MAP.get(type(exc), InternalRpcError.code)
            raise rpc_error_from(int(code), exc.message, exc.data) from None
        if kind == "send":
            field = "task" if isinstance(result, sdk.Task) else "message"
            yield from_json(SendMessageResponse, {field: MessageToDict(result)})
        elif kind == "task" and result is None:
            raise TaskNotFoundError("task not found")
        elif result is None:
            yield None
        else:
            result_class = request.method.result_class
            assert result_class is not None
            yield _ours(result_class, result)
