"""The A2A v1.0 ``GRPC`` binding (§10) on the HTTPS endpoint, over core's HTTP/2 server.

gRPC is HTTP/2 with a fixed shape (the gRPC "PROTOCOL-HTTP2" document): a POST to
``/lf.a2a.v1.A2AService/<Method>`` with ``content-type: application/grpc`` whose
body is length-prefixed protobuf messages (one byte "compressed", four bytes
big-endian length, the message); the answer is HTTP 200 with the same framing,
then HTTP/2 trailers holding ``grpc-status``, ``grpc-message`` and, for errors,
``grpc-status-details-bin`` (a ``google.rpc.Status`` whose details hold the
``google.rpc.ErrorInfo`` of §10.6, reason and domain as in §5.4). The listener
sends trailers (the ASGI ``http.response.trailers`` extension) when the client
says ``te: trailers``, which gRPC clients do, so the same app, port and mutual
TLS serve gRPC beside JSON-RPC and HTTP+JSON; grpcio's own server could not share
the port.

The protobuf messages are a2a-sdk's (``a2a.types.a2a_pb2``, generated from
a2a.proto): a request is read into its proto, turned into proto3 JSON and
parsed by Sealwire's codec as the JSON-RPC request of the same method, so the
dispatcher sees the same request whatever binding carried it; a result goes the
other way. a2a-sdk is an optional extra of core (``sealwire[a2a]``): without it
(:func:`grpc_available` false) the endpoint serves no gRPC and the card does not
list it. Service parameters (``a2a-version``, ``a2a-extensions``) are gRPC
metadata, i.e. HTTP/2 headers (§10.2). Compressed messages are refused
(UNIMPLEMENTED): the answer is never compressed either.

grpcio's TLS (BoringSSL) offers no Ed25519 signature algorithm, so a grpcio
client cannot verify a server certificate with an Ed25519 key (the TLS
binding's): the TLS binding does not turn this on yet (plugins/tls README, "gRPC").
"""

from __future__ import annotations

import base64
import functools
import importlib
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

from sealwire.binding import PeerIdentity
from sealwire.codec import (
    A2A_VERSION,
    A2AError,
    ErrorResponse,
    InternalRpcError,
    InvalidRequestError,
    Method,
    Request,
    Response,
    parse_request,
    rpc_error_from,
    to_json,
)
from sealwire.errors import AuthenticationError, PolicyError, SealwireError
from sealwire.transport._responses import aclose_results, plain_response

__all__ = [
    "GRPC_MEDIA_TYPE",
    "GRPC_PREFIX",
    "MAX_GRPC_MESSAGE",
    "frame",
    "grpc_available",
    "read_frames",
    "serve_grpc",
]

log = logging.getLogger(__name__)

GRPC_PREFIX = "/lf.a2a.v1.A2AService/"
"""The path of every A2A gRPC method: ``/<package>.<service>/`` of a2a.proto."""
GRPC_MEDIA_TYPE = "application/grpc"
MAX_GRPC_MESSAGE = 16 * 1024 * 1024
"""The largest request message read: the frame limit of the other transports."""
_HEADER = struct.Struct(">BI")

STATUS_CODES: Mapping[str, int] = {
    "OK": 0, "INVALID_ARGUMENT": 3, "NOT_FOUND": 5, "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9, "UNIMPLEMENTED": 12, "INTERNAL": 13,
    "UNAUTHENTICATED": 16,
}  # fmt: skip
"""The gRPC status codes this binding answers with (grpc/doc/statuscodes.md)."""

_ERRORS: Mapping[int, str] = {
    -32001: "NOT_FOUND",
    -32002: "FAILED_PRECONDITION",
    -32003: "FAILED_PRECONDITION",
    -32004: "FAILED_PRECONDITION",
    -32005: "INVALID_ARGUMENT",
    -32006: "INTERNAL",
    -32007: "FAILED_PRECONDITION",
    -32008: "FAILED_PRECONDITION",
    -32009: "FAILED_PRECONDITION",
    -32700: "INVALID_ARGUMENT",
    -32600: "INVALID_ARGUMENT",
    -32601: "UNIMPLEMENTED",
    -32602: "INVALID_ARGUMENT",
    -32603: "INTERNAL",
}
"""§5.4 and §10.6: JSON-RPC code -> gRPC status (an unknown method is UNIMPLEMENTED, as
gRPC servers answer one); the status details are the error's own (§9.5)."""

_RESPONSES: Mapping[Method, str] = {
    Method.SEND_MESSAGE: "SendMessageResponse",
    Method.SEND_STREAMING_MESSAGE: "StreamResponse",
    Method.GET_TASK: "Task",
    Method.LIST_TASKS: "ListTasksResponse",
    Method.CANCEL_TASK: "Task",
    Method.SUBSCRIBE_TO_TASK: "StreamResponse",
    Method.CREATE_TASK_PUSH_NOTIFICATION_CONFIG: "TaskPushNotificationConfig",
    Method.GET_TASK_PUSH_NOTIFICATION_CONFIG: "TaskPushNotificationConfig",
    Method.LIST_TASK_PUSH_NOTIFICATION_CONFIGS: "ListTaskPushNotificationConfigsResponse",
    Method.DELETE_TASK_PUSH_NOTIFICATION_CONFIG: "",  # google.protobuf.Empty
    Method.GET_EXTENDED_AGENT_CARD: "AgentCard",
}
_REQUESTS: Mapping[Method, str] = {
    Method.SEND_MESSAGE: "SendMessageRequest",
    Method.SEND_STREAMING_MESSAGE: "SendMessageRequest",
    Method.GET_TASK: "GetTaskRequest",
    Method.LIST_TASKS: "ListTasksRequest",
    Method.CANCEL_TASK: "CancelTaskRequest",
    Method.SUBSCRIBE_TO_TASK: "SubscribeToTaskRequest",
    Method.CREATE_TASK_PUSH_NOTIFICATION_CONFIG: "TaskPushNotificationConfig",
    Method.GET_TASK_PUSH_NOTIFICATION_CONFIG: "GetTaskPushNotificationConfigRequest",
    Method.LIST_TASK_PUSH_NOTIFICATION_CONFIGS: "ListTaskPushNotificationConfigsRequest",
    Method.DELETE_TASK_PUSH_NOTIFICATION_CONFIG: "DeleteTaskPushNotificationConfigRequest",
    Method.GET_EXTENDED_AGENT_CARD: "GetExtendedAgentCardRequest",
}
"""a2a.proto's request and response messages of each method (its ``A2AService``)."""


class _GrpcError(Exception):
    """A gRPC status to answer with (not an A2A error: framing, compression, refusals)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@functools.cache
def _modules() -> dict[str, Any] | None:
    """a2a-sdk's protos and protobuf's helpers, or None when they are not installed."""
    try:
        return {
            "a2a": importlib.import_module("a2a.types.a2a_pb2"),
            "json_format": importlib.import_module("google.protobuf.json_format"),
            "message": importlib.import_module("google.protobuf.message"),
            "status": importlib.import_module("google.rpc.status_pb2"),
            "details": importlib.import_module("google.rpc.error_details_pb2"),
        }
    except ImportError:
        return None


def grpc_available() -> bool:
    """Whether gRPC can be served here (a2a-sdk's protos are installed: ``sealwire[a2a]``)."""
    return _modules() is not None


def frame(message: bytes) -> bytes:
    """One length-prefixed gRPC message, uncompressed."""
    return _HEADER.pack(0, len(message)) + message


def read_frames(body: bytes) -> list[bytes]:
    """The messages of a request body; _GrpcError for broken framing or compression."""
    messages = []
    at = 0
    while at < len(body):
        if len(body) - at < _HEADER.size:
            raise _GrpcError("INTERNAL", "truncated gRPC message header")
        compressed, length = _HEADER.unpack_from(body, at)
        at += _HEADER.size
        if compressed:
            raise _GrpcError("UNIMPLEMENTED", "compressed messages are not supported")
        if length > len(body) - at:
            raise _GrpcError("INTERNAL", "truncated gRPC message")
        messages.append(body[at : at + length])
        at += length
    return messages


def _method(name: str) -> Method:
    try:
        return Method(name)
    except ValueError:
        raise _GrpcError("UNIMPLEMENTED", f"unknown method {name[:64]}") from None


def parse_grpc_request(name: str, body: bytes) -> Request:
    """The JSON-RPC request of a gRPC call to ``name`` with ``body``."""
    modules = _modules()
    if modules is None:
        raise _GrpcError("UNIMPLEMENTED", "gRPC is not served here")
    method = _method(name)
    messages = read_frames(body)
    if len(messages) != 1:
        raise _GrpcError("INVALID_ARGUMENT", "a call holds exactly one request message")
    proto_class = getattr(modules["a2a"], _REQUESTS[method])
    try:
        proto = proto_class.FromString(messages[0])
    except modules["message"].DecodeError:
        raise InvalidRequestError("the request message is not valid protobuf") from None
    params = modules["json_format"].MessageToDict(proto)
    return parse_request({"jsonrpc": "2.0", "id": 0, "method": method.value, "params": params})


def encode_result(method: Method, result: Any) -> bytes:
    """A result as the framed protobuf message of ``method``'s response."""
    modules = _modules()
    assert modules is not None  # a request was parsed
    name = _RESPONSES[method]
    if not name or result is None:
        return frame(b"")  # google.protobuf.Empty
    proto = modules["json_format"].ParseDict(
        to_json(result), getattr(modules["a2a"], name)(), ignore_unknown_fields=True
    )
    data: bytes = proto.SerializeToString()
    return frame(data)


def _grpc_message(text: str) -> bytes:
    """``grpc-message``: percent-encoded UTF-8 (PROTOCOL-HTTP2, "Responses")."""
    return quote(text[:1024], safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode("ascii")


def _trailers(
    status: str, message: str = "", details: list[Any] | None = None
) -> list[tuple[bytes, bytes]]:
    trailers = [(b"grpc-status", str(STATUS_CODES[status]).encode())]
    if message:
        trailers.append((b"grpc-message", _grpc_message(message)))
    modules = _modules()
    if details and modules is not None:
        detail = modules["status"].Status(code=STATUS_CODES[status], message=message)
        for item in details:  # §9.5 details in ProtoJSON: each an Any of its @type
            try:
                modules["json_format"].ParseDict(item, detail.details.add())
            except modules["json_format"].ParseError:
                del detail.details[-1]  # a detail of a type this side cannot encode
        encoded = base64.b64encode(detail.SerializeToString()).rstrip(b"=")
        trailers.append((b"grpc-status-details-bin", encoded))
    return trailers


def _error_trailers(error: ErrorResponse) -> list[tuple[bytes, bytes]]:
    status = _ERRORS.get(error.error.code, "INTERNAL")
    details = error.error.data
    if not isinstance(details, list):  # an error object made without its details
        details = rpc_error_from(error.error).details()
    return _trailers(status, error.error.message, details)


Identify = Callable[[Mapping[str, Any], Mapping[str, str]], Awaitable[PeerIdentity]]
Dispatch = Callable[[Request, PeerIdentity], AsyncIterator[Any]]


async def serve_grpc(
    scope: Mapping[str, Any],
    headers: Mapping[str, str],
    receive: Any,
    send: Any,
    *,
    identify: Identify,
    dispatch: Dispatch,
    extra_headers: Callable[[PeerIdentity], Mapping[str, str]],
    read_body: Callable[[Any, int], Awaitable[bytes | None]],
    first: Callable[[AsyncIterator[Any], Request], Awaitable[Response | ErrorResponse]],
    check_version: Callable[[Mapping[str, str]], None],
) -> None:
    """Serve one gRPC call (``scope['path']`` under :data:`GRPC_PREFIX`) on HTTP/2."""

    if scope.get("http_version") != "2":
        await plain_response(send, 426, b"gRPC needs HTTP/2")
        return
    started = False
    extra: Mapping[str, str] = {}

    async def start() -> None:
        nonlocal started
        if started:
            return
        started = True
        response = [(b"content-type", GRPC_MEDIA_TYPE.encode()),
                    (b"a2a-version", A2A_VERSION.encode())]  # fmt: skip
        response += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": 200, "headers": response,
                    "trailers": True})  # fmt: skip

    async def end(trailers: list[tuple[bytes, bytes]]) -> None:
        await start()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        await send({"type": "http.response.trailers", "headers": trailers, "more_trailers": False})

    try:
        peer = await identify(scope, headers)
        extra = extra_headers(peer)
    except SealwireError as exc:
        status = "PERMISSION_DENIED" if isinstance(exc, AuthenticationError | PolicyError) else (
            "UNAUTHENTICATED")  # fmt: skip
        # The body first (dropped: a limit of 0 keeps none of it, and drains what the
        # HTTP listener drains), then the answer: over HTTP/2 a body still arriving for
        # a stream already ended brings the connection down.
        await read_body(receive, 0)
        await end(_trailers(status, str(exc)[:300]))
        return
    body = await read_body(receive, MAX_GRPC_MESSAGE + _HEADER.size)
    try:
        if body is None:
            raise _GrpcError("RESOURCE_EXHAUSTED", "request message too large")
        request = parse_grpc_request(scope["path"][len(GRPC_PREFIX) :], body)
        check_version(headers)
    except _GrpcError as exc:
        await end(_trailers(exc.status, exc.message))
        return
    except A2AError as exc:
        await end(_error_trailers(ErrorResponse.from_error(exc, 0)))
        return
    results = dispatch(request, peer)
    try:
        answer = await first(results, request)
    except SealwireError as exc:
        await aclose_results(results)
        await end(_trailers("PERMISSION_DENIED", str(exc)[:300]))
        return
    if isinstance(answer, ErrorResponse):
        await aclose_results(results)
        await end(_error_trailers(answer))
        return
    await start()
    trailers = _trailers("OK")
    try:
        await send({"type": "http.response.body", "body": encode_result(request.method,
                    answer.result), "more_body": True})  # fmt: skip
        if request.method.streaming:
            async for result in results:
                data = encode_result(request.method, result)
                await send({"type": "http.response.body", "body": data, "more_body": True})
    except A2AError as exc:
        trailers = _error_trailers(ErrorResponse.from_error(exc, 0))
    except Exception:
        log.exception("gRPC stream for %s failed", request.method.value)
        trailers = _error_trailers(ErrorResponse.from_error(InternalRpcError("internal error"), 0))
    finally:
        await aclose_results(results)
    await end(trailers)
