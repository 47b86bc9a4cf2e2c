"""Length-prefixed framing for byte streams (TCP).

Wire format of one frame::

    frame = length body
    length = uint32, big-endian: the number of bytes in body
    body = length bytes

The length is checked against the receiver's limit *before* any of the body
is read or buffered, so a hostile prefix costs four bytes, not memory. A
stream that ends inside a frame is a closed stream, never a hang.
"""

from __future__ import annotations

import asyncio
import struct

from sealwire.transport._base import FrameTooLargeError, TransportClosed, check_size

__all__ = ["HEADER_SIZE", "MAX_WIRE_FRAME", "FrameDecoder", "encode_frame", "read_frame"]

_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size
MAX_WIRE_FRAME = 2**32 - 1
"""The largest length a 4-byte prefix can express."""


def encode_frame(frame: bytes, max_frame_size: int) -> bytes:
    """The frame with its length prefix; :class:`FrameTooLargeError` above the limit."""
    check_size(len(frame), min(max_frame_size, MAX_WIRE_FRAME))
    return _HEADER.pack(len(frame)) + frame


async def read_frame(reader: asyncio.StreamReader, max_frame_size: int) -> bytes:
    """Read one frame from ``reader``.

    :raises TransportClosed: at EOF, including EOF inside a frame (truncated).
    :raises FrameTooLargeError: when the prefix announces more than ``max_frame_size``.
    """
    try:
        header = await reader.readexactly(HEADER_SIZE)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise TransportClosed("stream ended inside a frame header") from None
        raise TransportClosed("stream closed by the peer") from None
    (length,) = _HEADER.unpack(header)
    check_size(length, max_frame_size)
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise TransportClosed("stream ended inside a frame body") from None


class FrameDecoder:
    """Sans-I/O decoder: feed bytes with :meth:`receive_data`, take frames with
    :meth:`next_frame`.

    A length above ``max_frame_size`` is rejected as soon as its header is
    complete, before the body arrives. The decoder is then poisoned: a stream
    cannot be resynchronised, so every later call raises the same error.
    """

    def __init__(self, max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._error: FrameTooLargeError | None = None

    def receive_data(self, data: bytes) -> None:
        """Append bytes read from the stream."""
        if self._error is not None:
            raise self._error
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """The next whole frame, or ``None`` when more bytes are needed."""
        if self._error is not None:
            raise self._error
        if len(self._buffer) < HEADER_SIZE:
            return None
        (length,) = _HEADER.unpack_from(self._buffer)
        try:
            check_size(length, self.max_frame_size)
        except FrameTooLargeError as exc:
            self._error = exc
            self._buffer.clear()
            raise
        end = HEADER_SIZE + length
        if len(self._buffer) < end:
            return None
        frame = bytes(self._buffer[HEADER_SIZE:end])
        del self._buffer[:end]
        return frame

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet form a whole frame."""
        return len(self._buffer)
