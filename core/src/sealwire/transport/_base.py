"""The transport contract: frame streams, datagram endpoints, listeners, errors.

A transport carries opaque bytes; it adds no cryptography. A
:class:`FrameStream` is reliable and ordered and keeps frame boundaries; a
:class:`DatagramEndpoint` talks to one peer and may lose, reorder or
duplicate what it carries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol, Self, TypeVar, runtime_checkable

from sealwire.errors import DecodeError, SealwireError

__all__ = [
    "DEFAULT_MAX_DATAGRAM",
    "DEFAULT_MAX_FRAME",
    "DatagramEndpoint",
    "FrameStream",
    "FrameTooLargeError",
    "Listener",
    "TransportClosed",
    "TransportError",
]

log = logging.getLogger("sealwire.transport")

DEFAULT_MAX_FRAME = 16 * 1024 * 1024
"""Largest frame a stream accepts by default (16 MiB).

A receiver allocates a frame's whole body before handing it on, so this bounds
the memory one connection can make us reserve. It is far above any A2A frame
or protocol handshake we send (an MLS Welcome for 10,000 members is a few MB),
and equals ``websockets``' usual order of magnitude for a single message.
"""

DEFAULT_MAX_DATAGRAM = 65_507
"""Largest UDP payload over IPv4 (65,535 - 8 UDP header - 20 IP header).

Senders should stay under the path MTU (about 1,200 bytes is safe); this only
bounds what the socket layer accepts.
"""

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds a connection attempt (TCP connect, WebSocket opening handshake) may take."""

CLOSE_GRACE = 2.0
"""Seconds a closing listener lets its handlers finish before cancelling them."""


class TransportError(SealwireError):
    """A transport failed: it could not connect, or the connection broke."""


class TransportClosed(TransportError):
    """The stream or endpoint is closed (by us or by the peer); no more frames."""


class FrameTooLargeError(DecodeError):
    """A frame (or datagram) is larger than the allowed maximum."""

    def __init__(self, size: int | None, limit: int, *, field: str = "frame length") -> None:
        self.size = size
        self.limit = limit
        what = "frame" if size is None else f"{size} bytes"
        super().__init__(f"{what} exceeds the limit of {limit} bytes", field=field)


@runtime_checkable
class FrameStream(Protocol):
    """A reliable, ordered stream of whole frames to one peer."""

    max_frame_size: int
    peer_address: str

    async def send(self, frame: bytes) -> None:
        """Send one frame; :class:`FrameTooLargeError` above ``max_frame_size``,
        :class:`TransportClosed` once closed."""
        ...

    async def receive(self) -> bytes:
        """The next frame; :class:`TransportClosed` at EOF or once closed,
        :class:`FrameTooLargeError` when the peer announces a frame above the limit."""
        ...

    async def close(self) -> None:
        """Close the stream (idempotent)."""
        ...


@runtime_checkable
class DatagramEndpoint(Protocol):
    """Unreliable datagrams to and from one peer (may be lost, reordered, duplicated)."""

    max_datagram_size: int
    peer_address: str

    async def send(self, datagram: bytes) -> None:
        """Send one datagram; :class:`FrameTooLargeError` above ``max_datagram_size``."""
        ...

    async def receive(self) -> bytes:
        """The next datagram; :class:`TransportClosed` once closed."""
        ...

    async def close(self) -> None:
        """Close the endpoint (idempotent)."""
        ...


@runtime_checkable
class Listener(Protocol):
    """A server returned by ``serve``; closing it closes its connections."""

    url: str

    async def close(self) -> None:
        """Stop accepting, close every connection, wait for the handlers (idempotent)."""
        ...

    async def __aenter__(self) -> Listener: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


T = TypeVar("T")


def check_size(size: int, limit: int, field: str = "frame length") -> None:
    """Raise :class:`FrameTooLargeError` when ``size`` exceeds ``limit``."""
    if size > limit:
        raise FrameTooLargeError(size, limit, field=field)


def check_limit(value: int, name: str) -> int:
    """A size limit given by the caller must be a positive integer."""
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def format_address(scheme: str, host: str, port: int) -> str:
    """``scheme://host:port``, with IPv6 hosts in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


async def run_handler(
    handler: Callable[[T], Awaitable[None]],
    conn: T,
    peer: str,
    close: Callable[[], Awaitable[None]],
) -> None:
    """Run a connection handler; log its failure (never payload bytes), then close."""
    try:
        await handler(conn)
    except asyncio.CancelledError:
        raise
    except SealwireError as exc:  # our messages never hold secrets or payloads
        log.warning("handler for %s failed: %s: %s", peer, type(exc).__name__, exc)
    except Exception as exc:
        log.warning("handler for %s failed: %s", peer, type(exc).__name__)
    finally:
        await close()


class ListenerBase:
    """Shared listener plumbing: the handler tasks and async context management."""

    url: str

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish_tasks(self) -> None:
        """Let handlers notice their closed connections, then cancel stragglers."""
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=CLOSE_GRACE)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


class StreamListenerBase(ListenerBase):
    """Listener plumbing shared by the stream transports (TCP, WebSocket):
    admitting connections up to a limit and closing them with the listener."""

    def __init__(
        self,
        handler: Callable[[FrameStream], Awaitable[None]],
        max_frame_size: int,
        max_connections: int,
    ) -> None:
        super().__init__()
        self.url = ""
        self._handler = handler
        self._max_frame_size = max_frame_size
        self._max_connections = max_connections
        self._streams: set[FrameStream] = set()

    async def _admit(self, stream: FrameStream) -> None:
        """Run the handler on an accepted stream, or refuse it when full or closing."""
        if self._closed or len(self._streams) >= self._max_connections:
            log.warning("refused %s: listener full or closing", stream.peer_address)
            await stream.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._track(task)
        self._streams.add(stream)
        try:
            await run_handler(self._handler, stream, stream.peer_address, stream.close)
        finally:
            self._streams.discard(stream)

    async def _close_streams(self) -> None:
        for stream in list(self._streams):
            await stream.close()
        await self._finish_tasks()
