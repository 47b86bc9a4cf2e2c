"""The A2A frame: the one plaintext unit every Sealwire binding carries.

A frame is UTF-8 JSON holding the service parameters (A2A spec §3.2.6:
``A2A-Version``, ``A2A-Extensions``, ...) and exactly one JSON-RPC message::

    {"serviceParameters": {"A2A-Version": "1.0"},
     "jsonrpc": {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {...}}}

Over HTTP the service parameters are headers, so their names are
case-insensitive and must be HTTP field names (RFC 9110 §5.1 tokens), and
their values may not hold control characters: a frame relayed to HTTP cannot
smuggle a header. Requests are
typed on decoding; responses stay :class:`RawResponse` until matched with the
method of their request (:func:`parse_response`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from attrs import field, frozen

from sealwire.codec._errors import InvalidRequestError
from sealwire.codec._jsonrpc import (
    ErrorResponse,
    RawResponse,
    Request,
    Response,
    encode,
    loads,
    parse_message,
)
from sealwire.errors import DecodeError

__all__ = [
    "A2A_EXTENSIONS",
    "A2A_VERSION",
    "A2A_VERSION_PARAMETER",
    "MAX_FRAME_SIZE",
    "MAX_SERVICE_PARAMETERS",
    "Frame",
    "STREAM_PARAMETER",
    "ServiceParameters",
    "decode_frame",
    "encode_frame",
]

A2A_VERSION = "1.0"
"""The A2A protocol version Sealwire speaks."""
A2A_VERSION_PARAMETER = "A2A-Version"
A2A_EXTENSIONS = "A2A-Extensions"
"""Service parameter listing the extension URIs in use, comma-separated (spec §3.2.6)."""
STREAM_PARAMETER = "Sealwire-Stream"
"""Service parameter on streamed response frames: ``event``, or ``end`` on the last one."""

MAX_FRAME_SIZE = 16 * 1024 * 1024
"""Largest frame decoded by default (16 MiB): room for inline file parts, while a
hostile peer cannot make us parse unbounded JSON."""
MAX_SERVICE_PARAMETERS = 64
"""Service parameters per frame; like an HTTP server's header limit."""

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", re.ASCII)
# no controls, and no lone surrogate (not Unicode text: it could never be written back)
_FIELD_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]*")


class ServiceParameters(Mapping[str, str]):
    """Service parameters (spec §3.2.6): names case-insensitive, values case-sensitive.

    Lookups ignore case (``params.get("a2a-version")``); iteration and
    encoding keep each name as it was given. Two names differing only in case
    are refused, as are names that are not HTTP field names and values with
    control characters.
    """

    __slots__ = ("_index", "_items")

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        items = dict(items or {})
        if len(items) > MAX_SERVICE_PARAMETERS:
            raise ValueError(f"more than {MAX_SERVICE_PARAMETERS} service parameters")
        index: dict[str, str] = {}
        for name, value in items.items():
            if not isinstance(name, str) or not _TOKEN.fullmatch(name):
                raise ValueError("a service parameter name must be an HTTP field name")
            if not isinstance(value, str) or not _FIELD_VALUE.fullmatch(value):
                raise ValueError("a service parameter value must be a string without controls")
            if index.setdefault(name.lower(), name) != name:
                raise ValueError("two service parameters differ only in case")
        self._items = items
        self._index = index

    def __getitem__(self, name: str) -> str:
        if not isinstance(name, str):
            raise KeyError(name)
        return self._items[self._index[name.lower()]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def _folded(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self._items.items()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        try:
            folded = ServiceParameters(other)._folded()
        except ValueError:
            return False
        return self._folded() == folded

    def __hash__(self) -> int:
        return hash(frozenset(self._folded().items()))

    def __repr__(self) -> str:
        return f"ServiceParameters({self._items!r})"


def _to_parameters(items: Mapping[str, str]) -> ServiceParameters:
    return items if isinstance(items, ServiceParameters) else ServiceParameters(items)


@frozen
class Frame:
    """Service parameters and one JSON-RPC message (ARCHITECTURE "One unit on every binding").

    ``message`` is a typed :class:`Request`, a :class:`Response` (when
    sending), a :class:`RawResponse` (when received) or an :class:`ErrorResponse`.
    """

    service_parameters: ServiceParameters = field(converter=_to_parameters)
    message: Request | Response | RawResponse | ErrorResponse

    @property
    def version(self) -> str | None:
        """The ``A2A-Version`` service parameter, if any."""
        return self.service_parameters.get(A2A_VERSION_PARAMETER)

    @property
    def extensions(self) -> tuple[str, ...]:
        """The extension URIs listed in ``A2A-Extensions``."""
        value = self.service_parameters.get(A2A_EXTENSIONS, "")
        return tuple(uri for uri in (part.strip() for part in value.split(",")) if uri)


def encode_frame(frame: Frame) -> bytes:
    """The frame as compact UTF-8 JSON."""
    obj = {"serviceParameters": dict(frame.service_parameters), "jsonrpc": encode(frame.message)}
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def decode_frame(data: bytes, *, max_size: int = MAX_FRAME_SIZE) -> Frame:
    """Decode a frame received from a peer (hostile input).

    Raises only :class:`~sealwire.errors.DecodeError` (an oversized frame) or
    :class:`~sealwire.codec.A2AError` subclasses: :class:`JsonParseError`,
    :class:`InvalidRequestError`, and for a request also
    :class:`MethodNotFoundError` or :class:`InvalidParamsError` carrying its
    ``request_id``; a malformed response raises :class:`InvalidAgentResponseError`.
    """
    if len(data) > max_size:
        raise DecodeError(f"frame larger than {max_size} bytes", field="frame")
    obj = loads(data)
    if not isinstance(obj, dict):
        raise InvalidRequestError("a frame must be a JSON object", field="frame")
    params = obj.get("serviceParameters", {})
    if not isinstance(params, dict):
        raise InvalidRequestError("must be an object", field="serviceParameters")
    try:
        checked = ServiceParameters(params)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), field="serviceParameters") from None
    message: Any = obj.get("jsonrpc")
    if not isinstance(message, dict):
        raise InvalidRequestError("must be a JSON-RPC object", field="jsonrpc")
    return Frame(service_parameters=checked, message=parse_message(message))
