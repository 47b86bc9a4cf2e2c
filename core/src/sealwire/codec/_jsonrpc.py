"""JSON-RPC 2.0 envelopes for the A2A v1.0 methods (A2A spec §9; JSON-RPC 2.0 §4, §5).

A request names a :class:`Method`, whose params and result classes are known,
so requests are typed as soon as they are parsed. A response carries only an
id: it is typed by :func:`parse_response` once matched with the method of
its request (until then it is a :class:`RawResponse`).

Rules: ids are strings or integers (not ``null``, booleans or fractions); a
request without an id is a notification, which no A2A method allows, so it is
refused with :class:`InvalidRequestError`; every error raised while parsing a
request carries the request's id when it is known (``request_id``).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any, TypeAlias

from attrs import field, frozen

from sealwire.codec._errors import (
    A2AError,
    InvalidAgentResponseError,
    InvalidRequestError,
    JsonParseError,
    MethodNotFoundError,
    RpcError,
)
from sealwire.codec._json import NOT_TEXT, from_json, is_text, json_is_text, to_json
from sealwire.model import (
    AgentCard,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    SendMessageRequest,
    SendMessageResponse,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskPushNotificationConfig,
)

__all__ = [
    "JSONRPC_VERSION",
    "ErrorResponse",
    "JsonRpcMessage",
    "Method",
    "RawResponse",
    "Request",
    "RequestId",
    "Response",
    "encode",
    "loads",
    "parse_message",
    "parse_request",
    "parse_response",
]

JSONRPC_VERSION = "2.0"

RequestId: TypeAlias = str | int


class Method(enum.Enum):
    """The A2A v1.0 JSON-RPC methods (spec §5.3, §9), by canonical name."""

    SEND_MESSAGE = "SendMessage"
    SEND_STREAMING_MESSAGE = "SendStreamingMessage"
    GET_TASK = "GetTask"
    LIST_TASKS = "ListTasks"
    CANCEL_TASK = "CancelTask"
    SUBSCRIBE_TO_TASK = "SubscribeToTask"
    CREATE_TASK_PUSH_NOTIFICATION_CONFIG = "CreateTaskPushNotificationConfig"
    GET_TASK_PUSH_NOTIFICATION_CONFIG = "GetTaskPushNotificationConfig"
    LIST_TASK_PUSH_NOTIFICATION_CONFIGS = "ListTaskPushNotificationConfigs"
    DELETE_TASK_PUSH_NOTIFICATION_CONFIG = "DeleteTaskPushNotificationConfig"
    GET_EXTENDED_AGENT_CARD = "GetExtendedAgentCard"

    @classmethod
    def from_wire(cls, name: str) -> Method:
        """The method for a wire name: canonical, or a v0.3 alias such as ``message/send``.

        Raises :class:`MethodNotFoundError` for any other name.
        """
        method = _BY_WIRE_NAME.get(name)
        if method is None:
            raise MethodNotFoundError("method not found", field="method")
        return method

    @property
    def params_class(self) -> type:
        """The model class of this method's ``params``."""
        return _SIGNATURES[self][0]

    @property
    def result_class(self) -> type | None:
        """The model class of this method's ``result`` (``None``: the result is empty)."""
        return _SIGNATURES[self][1]

    @property
    def streaming(self) -> bool:
        """True when the answer is a stream of :class:`~sealwire.model.StreamResponse`."""
        return self in (Method.SEND_STREAMING_MESSAGE, Method.SUBSCRIBE_TO_TASK)


_SIGNATURES: dict[Method, tuple[type, type | None]] = {
    Method.SEND_MESSAGE: (SendMessageRequest, SendMessageResponse),
    Method.SEND_STREAMING_MESSAGE: (SendMessageRequest, StreamResponse),
    Method.GET_TASK: (GetTaskRequest, Task),
    Method.LIST_TASKS: (ListTasksRequest, ListTasksResponse),
    Method.CANCEL_TASK: (CancelTaskRequest, Task),
    Method.SUBSCRIBE_TO_TASK: (SubscribeToTaskRequest, StreamResponse),
    Method.CREATE_TASK_PUSH_NOTIFICATION_CONFIG: (
        TaskPushNotificationConfig,
        TaskPushNotificationConfig,
    ),
    Method.GET_TASK_PUSH_NOTIFICATION_CONFIG: (
        GetTaskPushNotificationConfigRequest,
        TaskPushNotificationConfig,
    ),
    Method.LIST_TASK_PUSH_NOTIFICATION_CONFIGS: (
        ListTaskPushNotificationConfigsRequest,
        ListTaskPushNotificationConfigsResponse,
    ),
    Method.DELETE_TASK_PUSH_NOTIFICATION_CONFIG: (DeleteTaskPushNotificationConfigRequest, None),
    Method.GET_EXTENDED_AGENT_CARD: (GetExtendedAgentCardRequest, AgentCard),
}

V03_ALIASES: Mapping[str, Method] = {
    "message/send": Method.SEND_MESSAGE,
    "message/stream": Method.SEND_STREAMING_MESSAGE,
    "tasks/get": Method.GET_TASK,
    "tasks/cancel": Method.CANCEL_TASK,
    "tasks/resubscribe": Method.SUBSCRIBE_TO_TASK,
    "tasks/pushNotificationConfig/set": Method.CREATE_TASK_PUSH_NOTIFICATION_CONFIG,
    "tasks/pushNotificationConfig/get": Method.GET_TASK_PUSH_NOTIFICATION_CONFIG,
    "tasks/pushNotificationConfig/list": Method.LIST_TASK_PUSH_NOTIFICATION_CONFIGS,
    "tasks/pushNotificationConfig/delete": Method.DELETE_TASK_PUSH_NOTIFICATION_CONFIG,
    "agent/getAuthenticatedExtendedCard": Method.GET_EXTENDED_AGENT_CARD,
}
"""A2A v0.3 method names accepted as aliases (their params are still read as v1.0 shapes)."""

_BY_WIRE_NAME: dict[str, Method] = {m.value: m for m in Method} | dict(V03_ALIASES)


def _check_id(_instance: Any, _attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError("a JSON-RPC id is a string or an integer")


@frozen
class Request:
    """A JSON-RPC request: ``params`` is an instance of ``method.params_class``."""

    id: RequestId = field(validator=_check_id)
    method: Method
    params: Any

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.params, self.method.params_class):
            expected = self.method.params_class.__name__
            raise TypeError(f"{self.method.value} takes {expected} params")


@frozen
class Response:
    """A successful JSON-RPC response: ``result`` is typed by the request's method."""

    id: RequestId
    result: Any


@frozen
class RawResponse:
    """A successful response not yet matched with its request: ``result`` is raw JSON."""

    id: RequestId
    result: Any


@frozen
class ErrorResponse:
    """A JSON-RPC error response; ``id`` is ``None`` when the request's id was unreadable."""

    id: RequestId | None
    error: RpcError

    @classmethod
    def from_error(cls, error: A2AError, request_id: RequestId | None = None) -> ErrorResponse:
        """The response reporting ``error``; its id defaults to ``error.request_id``."""
        return cls(
            id=request_id if request_id is not None else error.request_id,
            error=error.to_rpc_error(),
        )


JsonRpcMessage: TypeAlias = Request | Response | ErrorResponse
"""One JSON-RPC message as a frame carries it once typed."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(data: bytes | str) -> Any:
    """Parse JSON text strictly (UTF-8, no NaN/Infinity); errors give :class:`JsonParseError`."""
    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data).decode("utf-8")
        return json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        raise JsonParseError("invalid JSON") from None


def _read_id(obj: Mapping[str, Any], error: type[A2AError]) -> RequestId | None:
    if "id" not in obj or obj["id"] is None:
        return None
    value = obj["id"]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise error("id must be a string or an integer", field="id")
    if isinstance(value, str) and not is_text(value):
        raise error(f"id: {NOT_TEXT}", field="id")  # an id is echoed: never one unwritable
    return value


def _check_envelope(obj: Any, error: type[A2AError]) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise error("a JSON-RPC message must be an object")
    if obj.get("jsonrpc") != JSONRPC_VERSION:
        raise error('"jsonrpc" must be "2.0"', field="jsonrpc", request_id=_safe_id(obj))
    return obj


def _safe_id(obj: Mapping[str, Any]) -> RequestId | None:
    value = obj.get("id")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    if isinstance(value, str) and not is_text(value):
        return None
    return value


def parse_request(data: bytes | str | Mapping[str, Any]) -> Request:
    """Parse and type a JSON-RPC request (spec §9).

    Raises :class:`JsonParseError`, :class:`InvalidRequestError`,
    :class:`MethodNotFoundError` or :class:`InvalidParamsError` (whose
    ``field`` is the path inside ``params``).
    """
    obj = _check_envelope(data if isinstance(data, Mapping) else loads(data), InvalidRequestError)
    request_id = _read_id(obj, InvalidRequestError)
    method_name = obj.get("method")
    if not isinstance(method_name, str):
        raise InvalidRequestError("method must be a string", field="method", request_id=request_id)
    if request_id is None:
        raise InvalidRequestError("A2A methods take no notifications: id is required", field="id")
    try:
        method = Method.from_wire(method_name)
        params = obj.get("params")
        if params is None:
            params = {}
        params_obj: Any = from_json(method.params_class, params, path="params")
    except A2AError as exc:
        exc.request_id = request_id
        raise
    return Request(id=request_id, method=method, params=params_obj)


def parse_message(data: bytes | str | Mapping[str, Any]) -> Request | RawResponse | ErrorResponse:
    """Parse any JSON-RPC message: a typed request, a raw response or an error response."""
    obj = data if isinstance(data, Mapping) else loads(data)
    if isinstance(obj, Mapping) and (
        "method" in obj or ("params" in obj and "result" not in obj and "error" not in obj)
    ):
        # a request, or what can only be meant as one (params, no method): its
        # sender is answered with the request's error (-32600), as over HTTP
        return parse_request(obj)
    return _parse_untyped_response(obj)


def _parse_untyped_response(data: Any) -> RawResponse | ErrorResponse:
    obj = _check_envelope(data, InvalidAgentResponseError)
    request_id = _read_id(obj, InvalidAgentResponseError)
    has_result, has_error = "result" in obj, "error" in obj
    if has_result == has_error:
        raise InvalidAgentResponseError(
            "a response holds exactly one of result and error", request_id=request_id
        )
    if has_error:
        return ErrorResponse(id=request_id, error=_parse_error(obj["error"], request_id))
    if request_id is None:
        raise InvalidAgentResponseError("a result needs the request's id", field="id")
    return RawResponse(id=request_id, result=obj["result"])


def _parse_error(error: Any, request_id: RequestId | None) -> RpcError:
    if not isinstance(error, Mapping):
        raise InvalidAgentResponseError(
            "error must be an object", field="error", request_id=request_id
        )
    code, message = error.get("code"), error.get("message", "")
    if isinstance(code, bool) or not isinstance(code, int):
        raise InvalidAgentResponseError(
            "must be an integer", field="error.code", request_id=request_id
        )
    if not isinstance(message, str):
        raise InvalidAgentResponseError(
            "must be a string", field="error.message", request_id=request_id
        )
    data = error.get("data")
    if not is_text(message) or not json_is_text(data):
        raise InvalidAgentResponseError(NOT_TEXT, field="error", request_id=request_id)
    return RpcError(code=code, message=message, data=data)


def parse_response(
    data: bytes | str | Mapping[str, Any] | RawResponse | Response | ErrorResponse,
    method: Method,
) -> Response | ErrorResponse:
    """Type a response with the result class of the request's ``method`` (spec §9).

    Takes the JSON (bytes, text or object) or a :class:`RawResponse` from a
    decoded frame. A malformed response or result raises
    :class:`InvalidAgentResponseError` (its ``field`` is the path inside
    ``result``); an error response, or a response already typed, is returned as is.
    """
    if isinstance(data, (Response, ErrorResponse)):
        return data
    if isinstance(data, RawResponse):
        raw: RawResponse | ErrorResponse = data
    else:
        raw = _parse_untyped_response(data if isinstance(data, Mapping) else _loads_response(data))
    if isinstance(raw, ErrorResponse):
        return raw
    cls = method.result_class
    if cls is None:
        if raw.result not in (None, {}):
            raise InvalidAgentResponseError(
                "expected an empty result", field="result", request_id=raw.id
            )
        return Response(id=raw.id, result=None)
    try:
        result: Any = from_json(cls, raw.result, path="result", error=InvalidAgentResponseError)
    except A2AError as exc:
        exc.request_id = raw.id
        raise
    return Response(id=raw.id, result=result)


def _loads_response(data: bytes | str) -> Any:
    try:
        return loads(data)
    except JsonParseError:
        raise InvalidAgentResponseError("response is not JSON") from None


def encode(message: Request | Response | RawResponse | ErrorResponse) -> dict[str, Any]:
    """The JSON object of a JSON-RPC message."""
    if isinstance(message, Request):
        return {
            "jsonrpc": JSONRPC_VERSION,
            "id": message.id,
            "method": message.method.value,
            "params": to_json(message.params),
        }
    if isinstance(message, ErrorResponse):
        error: dict[str, Any] = {"code": message.error.code, "message": message.error.message}
        if message.error.data is not None:
            error["data"] = message.error.data
        return {"jsonrpc": JSONRPC_VERSION, "id": message.id, "error": error}
    result = message.result
    if isinstance(message, Response) and result is not None:
        result = to_json(result)
    return {"jsonrpc": JSONRPC_VERSION, "id": message.id, "result": result}
