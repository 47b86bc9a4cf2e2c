"""A2A and JSON-RPC 2.0 errors (A2A v1.0 spec §5.4 and §9.5; JSON-RPC 2.0 §5.1).

Each error is an exception class with its wire ``code`` and its §5.4 ``reason``.
Errors raised while decoding hostile input (:class:`JsonParseError`,
:class:`InvalidRequestError`, :class:`InvalidParamsError`,
:class:`InvalidAgentResponseError`) are also :class:`~sealwire.errors.DecodeError`,
and name the field that was wrong (never its value). On the wire (§9.5) an
error's ``data`` is its details: a ``google.rpc.ErrorInfo`` (reason, domain, the
error's metadata) and, when a field is named, a ``google.rpc.BadRequest``
violation for it, as a2a-sdk's servers send them. :func:`rpc_error_from` maps a
received error object back to its class and metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    "error_reason",
    "rpc_error_from",
]

ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
A2A_DOMAIN = "a2a-protocol.org"
"""The ``domain`` of the ``ErrorInfo`` of A2A errors (§5.4)."""
UNKNOWN_REASON = "UNKNOWN_ERROR"


@frozen
class RpcError:
    """A JSON-RPC 2.0 error object as it travels (JSON-RPC 2.0 §5.1)."""

    code: int
    message: str
    data: Any = None


class A2AError(SealwireError):
    """Root of the errors an A2A peer reports with a JSON-RPC error code.

    ``message`` is the human-readable text sent to the peer, ``data`` the
    error's metadata (the ``ErrorInfo.metadata`` strings sent with it, e.g. a
    task id), ``field`` the input field at fault and ``request_id`` the JSON-RPC
    id of the request it answers, when known.
    """

    code: int = -32603
    reason: str = "INTERNAL_ERROR"
    default_message: ClassVar[str] = "internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        data: Mapping[str, str] | None = None,
        field: str | None = None,
        request_id: str | int | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.data = data
        self.field = field
        self.request_id = request_id
        Exception.__init__(self, f"{field}: {self.message}" if field else self.message)

    def details(self) -> list[dict[str, Any]]:
        """The §9.5 error details: its ``ErrorInfo``, then a ``BadRequest`` naming the field."""
        info = {"@type": ERROR_INFO_TYPE, "reason": self.reason, "domain": A2A_DOMAIN,
                "metadata": dict(self.data or {})}  # fmt: skip
        out: list[dict[str, Any]] = [info]
        if self.field:
            violation = {"field": self.field, "description": self.message}
            out.append({"@type": BAD_REQUEST_TYPE, "fieldViolations": [violation]})
        return out

    def to_rpc_error(self) -> RpcError:
        """The JSON-RPC error object that reports this error to the peer."""
        text = f"{self.field}: {self.message}" if self.field else self.message
        return RpcError(code=self.code, message=text, data=self.details())


class JsonParseError(A2AError, DecodeError):
    """The bytes are not JSON (JSON-RPC -32700)."""

    code = -32700
    reason = "INVALID_REQUEST"
    default_message = "invalid JSON"


class InvalidRequestError(A2AError, DecodeError):
    """The JSON is not a valid JSON-RPC request (JSON-RPC -32600)."""

    code = -32600
    reason = "INVALID_REQUEST"
    default_message = "invalid request"


class MethodNotFoundError(A2AError):
    """The method does not exist (JSON-RPC -32601)."""

    code = -32601
    reason = "METHOD_NOT_FOUND"
    default_message = "method not found"


class InvalidParamsError(A2AError, DecodeError):
    """The params are not valid for the method (JSON-RPC -32602)."""

    code = -32602
    reason = "INVALID_PARAMS"
    default_message = "invalid params"


class InternalRpcError(A2AError):
    """The server failed (JSON-RPC -32603)."""

    code = -32603
    reason = "INTERNAL_ERROR"
    default_message = "internal error"


class TaskNotFoundError(A2AError):
    """The task does not exist or is not visible to the caller (A2A -32001)."""

    code = -32001
    reason = "TASK_NOT_FOUND"
    default_message = "task not found"


class TaskNotCancelableError(A2AError):
    """The task is in a state that cannot be canceled (A2A -32002)."""

    code = -32002
    reason = "TASK_NOT_CANCELABLE"
    default_message = "task cannot be canceled"


class PushNotificationNotSupportedError(A2AError):
    """The agent does not support push notifications (A2A -32003)."""

    code = -32003
    reason = "PUSH_NOTIFICATION_NOT_SUPPORTED"
    default_message = "push notifications are not supported"


class UnsupportedOperationError(A2AError):
    """The operation is not supported (A2A -32004)."""

    code = -32004
    reason = "UNSUPPORTED_OPERATION"
    default_message = "this operation is not supported"


class ContentTypeNotSupportedError(A2AError):
    """A part's media type is not supported (A2A -32005)."""

    code = -32005
    reason = "CONTENT_TYPE_NOT_SUPPORTED"
    default_message = "incompatible content types"


class InvalidAgentResponseError(A2AError, DecodeError):
    """The agent's response does not conform to the spec (A2A -32006)."""

    code = -32006
    reason = "INVALID_AGENT_RESPONSE"
    default_message = "invalid agent response"


class ExtendedAgentCardNotConfiguredError(A2AError):
    """The agent has no extended card (A2A -32007)."""

    code = -32007
    reason = "EXTENDED_AGENT_CARD_NOT_CONFIGURED"
    default_message = "extended agent card is not configured"


class ExtensionSupportRequiredError(A2AError):
    """The agent requires an extension the client did not declare (A2A -32008)."""

    code = -32008
    reason = "EXTENSION_SUPPORT_REQUIRED"
    default_message = "extension support required"


class VersionNotSupportedError(A2AError):
    """The requested A2A version is not supported (A2A -32009)."""

    code = -32009
    reason = "VERSION_NOT_SUPPORTED"
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


def error_reason(code: int) -> str:
    """The §5.4 ``ErrorInfo`` reason of a JSON-RPC error code."""
    cls = _BY_CODE.get(code)
    return cls.reason if cls is not None else UNKNOWN_REASON


def rpc_error_from(
    error: RpcError | int, message: str | None = None, data: Mapping[str, str] | None = None
) -> A2AError:
    """The exception for a received error object (or code, message and metadata).

    From an error object, the metadata is its A2A ``ErrorInfo``'s and the field its
    one ``BadRequest`` violation's (details of another shape are ignored: they come
    from the peer). A code with no class of its own gives a plain
    :class:`A2AError` carrying that code and the reason received.
    """
    field, reason = None, None
    if isinstance(error, RpcError):
        code, message = error.code, error.message
        data, field, reason = _from_details(error.data, message)
        if field is not None:
            message = message.removeprefix(f"{field}: ")
    else:
        code = error
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(message, data=data, field=field)
    exc = A2AError(message or f"error {code}", data=data, field=field)
    exc.code = code
    exc.reason = reason or UNKNOWN_REASON
    return exc


def _from_details(
    details: Any, message: str
) -> tuple[dict[str, str] | None, str | None, str | None]:
    """(metadata, field, reason) of received §9.5 details; None for each one absent."""
    metadata = field = reason = None
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, Mapping):
            continue
        kind = detail.get("@type")
        if kind == ERROR_INFO_TYPE and reason is None and detail.get("domain") == A2A_DOMAIN:
            found = detail.get("reason")
            reason = found if isinstance(found, str) and found else None
            meta = detail.get("metadata")
            if (
                isinstance(meta, Mapping)
                and meta
                and all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
            ):
                metadata = dict(meta)
        elif kind == BAD_REQUEST_TYPE and field is None:
            violations = detail.get("fieldViolations")
            if isinstance(violations, list) and len(violations) == 1:
                name = violations[0].get("field") if isinstance(violations[0], Mapping) else None
                if isinstance(name, str) and name and message.startswith(f"{name}: "):
                    field = name
    return metadata, field, reason
