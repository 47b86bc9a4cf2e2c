"""Let an unmodified a2a-sdk client call peers through Sealwire bindings.

Each Sealwire binding is an a2a-sdk ``ClientTransport`` registered with
``ClientFactory.register`` under the binding's URI (the card's
``protocolBinding``), so the SDK's own factory picks it from a peer card's
``supportedInterfaces``. Calls then travel through a Sealwire :class:`Agent`:
the peer's card is verified and checked against the trust store, the binding
is used only if the agent's policy allows it, and requests and answers are the
same proto3 JSON on both sides. Failures raise what the SDK's own transports
raise: its A2A error class for a peer's error code, ``A2AClientError`` for the
rest (an untrusted card, no binding allowed, an unreachable peer).

    config = ClientConfig(supported_protocol_bindings=sealwire_binding_uris(agent))
    factory = ClientFactory(config)
    register_sealwire_transports(factory, agent)
    client = factory.create(card)   # an ordinary a2a-sdk Client
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

from a2a import types as sdk
from a2a.client import ClientFactory
from a2a.client.errors import A2AClientError
from a2a.client.transports.base import ClientTransport
from a2a.utils.errors import JSON_RPC_ERROR_CODE_MAP
from a2a.utils.errors import A2AError as SdkError
from google.protobuf.json_format import MessageToDict, ParseDict

from sealwire.binding import Shape
from sealwire.codec import A2AError, Method, from_json, to_json
from sealwire.errors import SealwireError
from sealwire.identity import VerifiedCard

if TYPE_CHECKING:
    from sealwire.agent import Agent

__all__ = [
    "SealwireClientTransport",
    "register_sealwire_transports",
    "sealwire_binding_uris",
]

T = TypeVar("T")


_SDK_ERRORS: dict[int, type[SdkError]] = {
    code: cls for cls, code in JSON_RPC_ERROR_CODE_MAP.items()
}
"""The SDK's error class for each A2A / JSON-RPC error code (what its JSONRPC transport raises)."""


def _to_sdk(value: Any, sdk_type: Any) -> Any:
    return ParseDict(to_json(value), sdk_type(), ignore_unknown_fields=True)


@contextlib.contextmanager
def _as_sdk_errors() -> Iterator[None]:
    """Raise what the SDK's own transports raise: its A2A error for a peer's error
    code, ``A2AClientError`` for anything else (an untrusted card, no binding, no route)."""
    try:
        yield
    except A2AError as exc:
        cls = _SDK_ERRORS.get(exc.code)
        data = exc.data if isinstance(exc.data, dict) else None
        if cls is None:
            raise A2AClientError(f"JSON-RPC Error {exc.code}: {exc.message}") from exc
        raise cls(exc.message, data=data) from exc
    except SealwireError as exc:
        raise A2AClientError(f"{type(exc).__name__}: {exc}") from exc


class SealwireClientTransport(ClientTransport):
    """An a2a-sdk transport that carries calls over one Sealwire binding."""

    def __init__(self, agent: Agent, card: sdk.AgentCard, binding: str) -> None:
        self._agent = agent
        self._binding = binding
        with _as_sdk_errors():
            self._peer: VerifiedCard = agent.peer(MessageToDict(card))

    async def _send(self, method: Method, request: Any) -> Any:
        with _as_sdk_errors():
            params: Any = from_json(method.params_class, MessageToDict(request))
            conn = await self._agent.connect(self._peer, binding=self._binding)
            return await conn.call(method, params)

    async def _call(self, method: Method, request: Any, result_type: type[T]) -> T:
        return cast(T, _to_sdk(await self._send(method, request), result_type))

    async def _stream(self, method: Method, request: Any) -> AsyncGenerator[sdk.StreamResponse]:
        with _as_sdk_errors():
            params: Any = from_json(method.params_class, MessageToDict(request))
            conn = await self._agent.connect(self._peer, binding=self._binding)
            async for event in conn.stream(method, params):
                yield _to_sdk(event, sdk.StreamResponse)

    async def send_message(
        self, request: sdk.SendMessageRequest, *, context: Any = None
    ) -> sdk.SendMessageResponse:
        return await self._call(Method.SEND_MESSAGE, request, sdk.SendMessageResponse)

    async def send_message_streaming(
        self, request: sdk.SendMessageRequest, *, context: Any = None
    ) -> AsyncGenerator[sdk.StreamResponse]:
        async for event in self._stream(Method.SEND_STREAMING_MESSAGE, request):
            yield event

    async def get_task(self, request: sdk.GetTaskRequest, *, context: Any = None) -> sdk.Task:
        return await self._call(Method.GET_TASK, request, sdk.Task)

    async def list_tasks(
        self, request: sdk.ListTasksRequest, *, context: Any = None
    ) -> sdk.ListTasksResponse:
        return await self._call(Method.LIST_TASKS, request, sdk.ListTasksResponse)

    async def cancel_task(self, request: sdk.CancelTaskRequest, *, context: Any = None) -> sdk.Task:
        return await self._call(Method.CANCEL_TASK, request, sdk.Task)

    async def create_task_push_notification_config(
        self, request: sdk.TaskPushNotificationConfig, *, context: Any = None
    ) -> sdk.TaskPushNotificationConfig:
        return await self._call(Method.CREATE_TASK_PUSH_NOTIFICATION_CONFIG, request,
                                sdk.TaskPushNotificationConfig)  # fmt: skip

    async def get_task_push_notification_config(
        self, request: sdk.GetTaskPushNotificationConfigRequest, *, context: Any = None
    ) -> sdk.TaskPushNotificationConfig:
        return await self._call(Method.GET_TASK_PUSH_NOTIFICATION_CONFIG, request,
                                sdk.TaskPushNotificationConfig)  # fmt: skip

    async def list_task_push_notification_configs(
        self, request: sdk.ListTaskPushNotificationConfigsRequest, *, context: Any = None
    ) -> sdk.ListTaskPushNotificationConfigsResponse:
        return await self._call(Method.LIST_TASK_PUSH_NOTIFICATION_CONFIGS, request,
                                sdk.ListTaskPushNotificationConfigsResponse)  # fmt: skip

    async def delete_task_push_notification_config(
        self, request: sdk.DeleteTaskPushNotificationConfigRequest, *, context: Any = None
    ) -> None:
        await self._send(Method.DELETE_TASK_PUSH_NOTIFICATION_CONFIG, request)

    async def subscribe(
        self, request: sdk.SubscribeToTaskRequest, *, context: Any = None
    ) -> AsyncGenerator[sdk.StreamResponse]:
        async for event in self._stream(Method.SUBSCRIBE_TO_TASK, request):
            yield event

    async def get_extended_agent_card(
        self, request: sdk.GetExtendedAgentCardRequest, *, context: Any = None
    ) -> sdk.AgentCard:
        return await self._call(Method.GET_EXTENDED_AGENT_CARD, request, sdk.AgentCard)

    async def close(self) -> None:
        """Connections belong to the agent, which closes them when it stops."""


def sealwire_binding_uris(agent: Agent) -> list[str]:
    """The URIs of the agent's session and mailbox bindings, in its preference order
    (put them in ``ClientConfig.supported_protocol_bindings``)."""
    return [c.info.uri for c in agent.policy.local_offers() if c.info.shape is not Shape.GROUP]


def register_sealwire_transports(factory: ClientFactory, agent: Agent) -> list[str]:
    """Register each of the agent's session and mailbox bindings under its URI."""
    uris = sealwire_binding_uris(agent)
    for cls in agent.policy.local_offers():
        if cls.info.uri not in uris:
            continue

        def produce(card: sdk.AgentCard, url: str, config: Any, name: str = cls.info.name) -> Any:
            return SealwireClientTransport(agent, card, name)

        factory.register(cls.info.uri, produce)
    return uris
