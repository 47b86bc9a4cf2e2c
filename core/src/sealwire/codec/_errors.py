"""A2A and JSON-RPC 2.0 errors (A2A v1.0 spec §5.4 and §9.5; JSON-RPC 2.0 §5.1).

Each error is an exception class with its wire ``code``. Errors raised while
decoding hostile input (:class:`JsonParseError`, :class:`InvalidRequestError`,
:class:`InvalidParamsError`, :class:`InvalidAgentResponseError`) are also
:class:`~sealwire.errors.DecodeError`, and name the field that was wrong
(never its value). :func:`rpc_error_from` maps a received error object back
to its class.
"""

from __future__ import annotations

from typing import Any, ClassVar

from attrs import frozen

from sealwire.errors import DecodeError, SealwireError

__all__ = [
    "A2AError",
    "ContentTypeNotSupportedError",
    "ExtendedAgentCardNotConfiguredError",
    "ExtensionSupportRequiredError",
    "InternalRpcError",
    "InvalidAgentResponseError",
    "InvalidParamsError",
    "InvalidRequestError",
    "JsonParseError",
    "MethodNotFoundError",
    "PushNotificationNotSupportedError",
    "RpcError",
    "TaskNotCancelableError",
    "TaskNotFoundError",
    "UnsupportedOperationError",
    "VersionNotSupportedError",
    "rpc_error_from",
]


@frozen
class RpcError:
    """A JSON-RPC 2.0 error object as it travels (JSON-RPC 2.0 §5.1)."""

    code: int
    message: str
    data: Any = None


class A2AError(SealwireError):
    """Root of the errors an A2A peer reports with a JSON-RPC error code.

    ``message`` is the human-readable text sent to the peer, ``data`` the
    optional JSON value sent with it, ``field`` the input field at fault and
    ``request_id`` the JSON-RPC id of the request it answers, when known.
    """

    code: int = -32603
    default_message: ClassVar[str] = "internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        data: Any = None,
        field: str | None = None,
        request_id: str | int | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.data = data
        self.field = field
        self.request_id = request_id
        Exception.__init__(self, f"{field}: {self.message}" if field else self.message)

    def to_rpc_error(self) -> RpcError:
        """The JSON-RPC error object that reports this error to the peer."""
        text = f"{self.field}: {self.message}" if self.field else self.message
        return RpcError(code=self.code, message=text, data=self.data)


class JsonParseError(A2AError, DecodeError):
    """The bytes are not JSON (JSON-RPC -32700)."""

    code = -32700
    default_message = "invalid JSON"


class InvalidRequestError(A2AError, DecodeError):
    """The JSON is not a valid JSON-RPC request (JSON-RPC -32600)."""

    code = -32600
    default_message = "invalid request"


class MethodNotFoundError(A2AError):
    """The method does not exist (JSON-RPC -32601)."""

    code = -32601
    default_message = "method not found"


class InvalidParamsError(A2AError, DecodeError):
    """The params are not valid for the method (JSON-RPC -32602)."""

    code = -32602
    default_message = "invalid params"


class InternalRpcError(A2AError):
    """The server failed (JSON-RPC -32603)."""

    code = -32603
    default_message = "internal error"


class TaskNotFoundError(A2AError):
    """The task does not exist or is not visible to the caller (A2A -32001)."""

    code = -32001
    default_message = "task not found"


class TaskNotCancelableError(A2AError):
    """The task is in a state that cannot be canceled (A2A -32002)."""

    code = -32002
    default_message = "task cannot be canceled"


class PushNotificationNotSupportedError(A2AError):
    """The agent does not support push notifications (A2A -32003)."""

    code = -32003
    default_message = "push notifications are not supported"


class UnsupportedOperationError(A2AError):
    """The operation is not supported (A2A -32004)."""

    code = -32004
    default_message = "this operation is not supported"


class ContentTypeNotSupportedError(A2AError):
    """A part's media type is not supported (A2A -32005)."""

    code = -32005
    default_message = "incompatible content types"


class InvalidAgentResponseError(A2AError, DecodeError):
    """The agent's response does not conform to the spec (A2A -32006)."""

    code = -32006
    default_message = "invalid agent response"


class ExtendedAgentCardNotConfiguredError(A2AError):
    """The agent has no extended card (A2A -32007)."""

    code = -32007
    default_message = "extended agent card is not configured"


class ExtensionSupportRequiredError(A2AError):
    """The agent requires an extension the client did not declare (A2A -32008)."""

    code = -32008
    default_message = "extension support required"


class VersionNotSupportedError(A2AError):
    """The requested A2A version is not supported (A2A -32009)."""

    code = -32009
    default_message = "version not supported"


_BY_CODE: dict[int, type[A2AError]] = {
    cls.code: cls
    for cls in (
        JsonParseError,
        InvalidRequestError,
        MethodNotFoundError,
        InvalidParamsError,
        InternalRpcError,
        TaskNotFoundError,
        TaskNotCancelableError,
        PushNotificationNotSupportedError,
        UnsupportedOperationError,
        ContentTypeNotSupportedError,
        InvalidAgentResponseError,
        ExtendedAgentCardNotConfiguredError,
        ExtensionSupportRequiredError,
        VersionNotSupportedError,
    )
}


def rpc_error_from(error: RpcError | int, message: str | None = None, data: Any = None) -> A2AError:
    """The exception for a received error object (or code, message and data).

    A code with no class of its own gives a plain :class:`A2AError` carrying
    that code.
    """
    if isinstance(error, RpcError):
        code, message, data = error.code, error.message, error.data
    else:
        code = error
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(message, data=data)
    exc = A2AError(message or f"error {code}", data=data)
    exc.code = code
    return exc
