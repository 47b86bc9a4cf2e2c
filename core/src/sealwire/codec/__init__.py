"""A2A v1.0 JSON: proto3 JSON of the model, JSON-RPC 2.0 envelopes, errors and the frame.

* :func:`to_json` / :func:`from_json` - model objects to and from proto3 JSON.
* :class:`Method`, :class:`Request`, :class:`Response`, :class:`ErrorResponse`,
  :func:`parse_request`, :func:`parse_response`, :func:`encode` - JSON-RPC 2.0.
* :class:`A2AError` and its subclasses - the A2A and JSON-RPC error codes.
* :class:`Frame`, :func:`encode_frame`, :func:`decode_frame` - the unit every
  binding carries.
"""

from __future__ import annotations

from sealwire.codec._errors import (
    A2AError,
    ContentTypeNotSupportedError,
    ExtendedAgentCardNotConfiguredError,
    ExtensionSupportRequiredError,
    InternalRpcError,
    InvalidAgentResponseError,
    InvalidParamsError,
    InvalidRequestError,
    JsonParseError,
    MethodNotFoundError,
    PushNotificationNotSupportedError,
    RpcError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
    VersionNotSupportedError,
    rpc_error_from,
)
from sealwire.codec._frame import (
    A2A_EXTENSIONS,
    A2A_VERSION,
    A2A_VERSION_PARAMETER,
    MAX_FRAME_SIZE,
    MAX_SERVICE_PARAMETERS,
    STREAM_PARAMETER,
    Frame,
    ServiceParameters,
    decode_frame,
    encode_frame,
)
from sealwire.codec._json import ALWAYS_WRITTEN, MAX_JSON_DEPTH, NON_EMPTY, from_json, to_json
from sealwire.codec._jsonrpc import (
    JSONRPC_VERSION,
    V03_ALIASES,
    ErrorResponse,
    JsonRpcMessage,
    Method,
    RawResponse,
    Request,
    RequestId,
    Response,
    encode,
    loads,
    parse_message,
    parse_request,
    parse_response,
)

__all__ = [
    "A2A_EXTENSIONS",
    "ALWAYS_WRITTEN",
    "A2A_VERSION",
    "A2A_VERSION_PARAMETER",
    "STREAM_PARAMETER",
    "JSONRPC_VERSION",
    "MAX_FRAME_SIZE",
    "MAX_JSON_DEPTH",
    "MAX_SERVICE_PARAMETERS",
    "NON_EMPTY",
    "V03_ALIASES",
    "A2AError",
    "ContentTypeNotSupportedError",
    "ErrorResponse",
    "ExtendedAgentCardNotConfiguredError",
    "ExtensionSupportRequiredError",
    "Frame",
    "InternalRpcError",
    "InvalidAgentResponseError",
    "InvalidParamsError",
    "InvalidRequestError",
    "JsonParseError",
    "JsonRpcMessage",
    "Method",
    "MethodNotFoundError",
    "PushNotificationNotSupportedError",
    "RawResponse",
    "Request",
    "RequestId",
    "Response",
    "RpcError",
    "ServiceParameters",
    "TaskNotCancelableError",
    "TaskNotFoundError",
    "UnsupportedOperationError",
    "VersionNotSupportedError",
    "decode_frame",
    "encode",
    "encode_frame",
    "from_json",
    "loads",
    "parse_message",
    "parse_request",
    "parse_response",
    "rpc_error_from",
    "to_json",
]
