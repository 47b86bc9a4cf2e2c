"""In-memory transports: a connected pair of frame streams, a pair of datagram endpoints.

Both ends live in one event loop. They behave like the network versions
(limits, close semantics, back-pressure) so tests and in-process agents use
the same code paths.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from sealwire.transport._base import (
    DEFAULT_MAX_DATAGRAM,
    DEFAULT_MAX_FRAME,
    DatagramEndpoint,
    FrameStream,
    TransportClosed,
    check_limit,
    check_size,
)

__all__ = ["memory_datagram_pair", "memory_pair"]

MEMORY_STREAM_CAPACITY = 64
"""Frames in flight one way before ``send`` waits: back-pressure like a socket buffer."""

MEMORY_DATAGRAM_QUEUE = 256
"""Datagrams queued at a receiver; more are dropped, as a full socket buffer drops them."""


class _Pipe:
    """One direction of a memory stream: a bounded FIFO with close semantics."""

    def __init__(self, capacity: int) -> None:
        self._items: deque[bytes] = deque()
        self._capacity = capacity
        self._cond = asyncio.Condition()
        self._closed = False

    async def put(self, item: bytes) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self._closed or len(self._items) < self._capacity)
            if self._closed:
                raise TransportClosed("stream closed")
            self._items.append(item)
            self._cond.notify_all()

    async def get(self) -> bytes:
        async with self._cond:
            await self._cond.wait_for(lambda: self._closed or bool(self._items))
            if not self._items:
                raise TransportClosed("stream closed")
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    async def close(self, *, discard: bool) -> None:
        """Writer side closes (the reader drains what is queued) or reader side (discard)."""
        async with self._cond:
            self._closed = True
            if discard:
                self._items.clear()
            self._cond.notify_all()


class MemoryStream:
    """One end of :func:`memory_pair`."""

    peer_address = "memory"

    def __init__(self, inbound: _Pipe, outbound: _Pipe, max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size
        self._inbound = inbound
        self._outbound = outbound
        self._closed = False

    async def send(self, frame: bytes) -> None:
        check_size(len(frame), self.max_frame_size)
        if self._closed:
            raise TransportClosed("stream closed")
        await self._outbound.put(bytes(frame))

    async def receive(self) -> bytes:
        return await self._inbound.get()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._outbound.close(discard=False)
        await self._inbound.close(discard=True)

    def __repr__(self) -> str:
        return f"<MemoryStream closed={self._closed}>"


def memory_pair(*, max_frame_size: int = DEFAULT_MAX_FRAME) -> tuple[FrameStream, FrameStream]:
    """Two connected in-memory :class:`FrameStream` ends."""
    check_limit(max_frame_size, "max_frame_size")
    a_to_b, b_to_a = _Pipe(MEMORY_STREAM_CAPACITY), _Pipe(MEMORY_STREAM_CAPACITY)
    return (
        MemoryStream(b_to_a, a_to_b, max_frame_size),
        MemoryStream(a_to_b, b_to_a, max_frame_size),
    )


class MemoryDatagramEndpoint:
    """One end of :func:`memory_datagram_pair`."""

    peer_address = "memory"

    def __init__(
        self, max_datagram_size: int, loss_for_testing: Callable[[bytes], bool] | None
    ) -> None:
        self.max_datagram_size = max_datagram_size
        self.peer: MemoryDatagramEndpoint | None = None
        self.dropped = 0
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(MEMORY_DATAGRAM_QUEUE)
        self._lose = loss_for_testing
        self._closed = False

    async def send(self, datagram: bytes) -> None:
        check_size(len(datagram), self.max_datagram_size, "datagram length")
        if self._closed:
            raise TransportClosed("endpoint closed")
        peer = self.peer
        if peer is None or (self._lose is not None and self._lose(datagram)):
            return
        peer._deliver(bytes(datagram))

    def _deliver(self, datagram: bytes) -> None:
        if self._closed or self._queue.full():
            self.dropped += 1
            return
        self._queue.put_nowait(datagram)

    async def receive(self) -> bytes:
        if self._closed:
            raise TransportClosed("endpoint closed")
        item = await self._queue.get()
        if item is None:
            raise TransportClosed("endpoint closed")
        return item

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)  # wakes a pending receive()

    def __repr__(self) -> str:
        return f"<MemoryDatagramEndpoint closed={self._closed}>"


def memory_datagram_pair(
    *,
    max_datagram_size: int = DEFAULT_MAX_DATAGRAM,
    loss_for_testing: Callable[[bytes], bool] | None = None,
) -> tuple[DatagramEndpoint, DatagramEndpoint]:
    """Two connected in-memory :class:`DatagramEndpoint` ends.

    Closing one end does not tell the other (datagrams have no connection).
    ``loss_for_testing``, when given, is asked about every datagram sent and
    loses it when it returns ``True``.
    """
    check_limit(max_datagram_size, "max_datagram_size")
    a = MemoryDatagramEndpoint(max_datagram_size, loss_for_testing)
    b = MemoryDatagramEndpoint(max_datagram_size, loss_for_testing)
    a.peer, b.peer = b, a
    return a, b
