"""Server-Sent Events: a sans-I/O decoder and the encoder (WHATWG HTML §9.2.5, §9.2.6).

The A2A JSONRPC binding streams each JSON-RPC response of a streaming method
as one event whose ``data`` is the response JSON (A2A v1.0 §9.4). Only the
``data`` field matters here; ``event``, ``id`` and ``retry`` are parsed per the
spec and kept on the event, comments (lines starting with ``:``) are skipped.

Rules of this decoder: lines end with CRLF, LF or CR; a blank line dispatches
the event if it has data; a field without a colon is a field with an empty
value; one leading space after the colon is dropped. Every buffer is bounded.
"""

from __future__ import annotations

import attrs

from sealwire.errors import DecodeError

__all__ = ["MAX_SSE_EVENT", "MAX_SSE_LINE", "SseDecoder", "SseEvent", "encode_sse"]

MAX_SSE_EVENT = 16 * 1024 * 1024
"""The largest event (its data) accepted: the frame limit of the other transports."""
MAX_SSE_LINE = MAX_SSE_EVENT + 64
"""The longest line buffered while waiting for its end (one data line may hold an event)."""


@attrs.frozen(kw_only=True)
class SseEvent:
    """One dispatched event.

    ``data`` is the data lines joined by ``\\n``; ``event`` the event type
    (``message`` when none was given); ``id`` the last event id field, if any.
    """

    data: str
    event: str = "message"
    id: str | None = None


def encode_sse(data: str) -> bytes:
    """One event carrying ``data`` (split over several ``data:`` lines if it has newlines)."""
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return b"".join(b"data: " + line.encode() + b"\n" for line in lines) + b"\n"


class SseDecoder:
    """Feed bytes as they arrive; get back the events completed so far.

    Raises :class:`~sealwire.errors.DecodeError` for an over-long line or event
    or for bytes that are not UTF-8; the decoder is unusable after that.
    """

    def __init__(self, *, max_event: int = MAX_SSE_EVENT) -> None:
        self._max_event = max_event
        self._max_line = max_event + 64
        self._buffer = bytearray()
        self._data: list[str] = []
        self._size = 0
        self._type = ""
        self._id: str | None = None
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Decode ``chunk``; return the events it completed (maybe none)."""
        events: list[SseEvent] = []
        data = bytes(chunk)
        if self._pending_cr and data.startswith(b"\n"):
            data = data[1:]  # the LF of a CRLF split across chunks
        self._pending_cr = False
        self._buffer += data
        start = 0
        buffer = self._buffer
        while True:
            end = _line_end(buffer, start)
            if end < 0:
                break
            line = bytes(buffer[start:end])
            if buffer[end] == 0x0D:
                if end + 1 < len(buffer):
                    start = end + 2 if buffer[end + 1] == 0x0A else end + 1
                else:
                    self._pending_cr, start = True, end + 1
            else:
                start = end + 1
            event = self._line(line)
            if event is not None:
                events.append(event)
        del buffer[:start]
        if len(buffer) > self._max_line:
            raise DecodeError("server-sent event line too long", field="sse")
        return events

    def _line(self, raw: bytes) -> SseEvent | None:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("server-sent events are not UTF-8", field="sse") from None
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._size += len(value) + 1
            if self._size > self._max_event:
                raise DecodeError("server-sent event too large", field="sse.data")
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id" and "\x00" not in value:
            self._id = value
        return None

    def _dispatch(self) -> SseEvent | None:
        if not self._data:
            self._type = ""
            return None
        event = SseEvent(data="\n".join(self._data), event=self._type or "message", id=self._id)
        self._data, self._size, self._type = [], 0, ""
        return event


def _line_end(buffer: bytearray, start: int) -> int:
    """Index of the first CR or LF at or after ``start``, or -1."""
    lf = buffer.find(b"\n", start)
    cr = buffer.find(b"\r", start)
    if lf < 0:
        return cr
    if cr < 0:
        return lf
    return min(lf, cr)
