"""Frame streams over TCP with 4-byte length-prefixed framing (see ``_framing``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sealwire.errors import describe_cause
from sealwire.transport._base import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_FRAME,
    FrameStream,
    StreamListenerBase,
    TransportClosed,
    TransportError,
    check_limit,
    format_address,
)
from sealwire.transport._framing import encode_frame, read_frame
from sealwire.transport._resolve import connect_first, resolve

__all__ = ["DEFAULT_MAX_CONNECTIONS", "TcpListener", "TcpStream", "connect_tcp", "serve_tcp"]

log = logging.getLogger("sealwire.transport")

CLOSE_FLUSH_TIMEOUT = 5.0
"""Seconds ``close()`` waits for unsent bytes to drain before aborting the connection."""

DEFAULT_MAX_CONNECTIONS = 1024
"""Connections a listener serves at once; more are closed on arrival. Each may
hold a frame of up to ``max_frame_size`` in memory, so this bounds the total."""


def _peer_of(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return format_address("tcp", str(peer[0]), int(peer[1]))
    return "tcp://unknown"


class TcpStream:
    """A :class:`FrameStream` over one TCP connection."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_frame_size: int
    ) -> None:
        self.max_frame_size = max_frame_size
        self.peer_address = _peer_of(writer)
        self._reader = reader
        self._writer = writer
        self._send_lock = asyncio.Lock()
        self._receive_lock = asyncio.Lock()
        self._closed = False

    async def send(self, frame: bytes) -> None:
        data = encode_frame(frame, self.max_frame_size)
        async with self._send_lock:
            if self._closed or self._writer.is_closing():
                raise TransportClosed("stream closed")
            try:
                self._writer.write(data)
                await self._writer.drain()
            except (ConnectionError, OSError) as exc:
                await self.close()
                raise TransportClosed(f"connection lost: {type(exc).__name__}") from None

    async def receive(self) -> bytes:
        async with self._receive_lock:
            if self._closed:
                raise TransportClosed("stream closed")
            try:
                return await read_frame(self._reader, self.max_frame_size)
            except (ConnectionError, OSError) as exc:
                await self.close()
                raise TransportClosed(f"connection lost: {type(exc).__name__}") from None
            except Exception:
                # A bad length prefix or EOF: the stream cannot be resynchronised.
                await self.close()
                raise

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        try:
            async with asyncio.timeout(CLOSE_FLUSH_TIMEOUT):
                await self._writer.wait_closed()
        except TimeoutError:
            self._writer.transport.abort()  # the peer does not read: drop unsent bytes
        except (ConnectionError, OSError):
            pass

    def __repr__(self) -> str:
        return f"<TcpStream {self.peer_address} closed={self._closed}>"


async def connect_tcp(
    host: str,
    port: int,
    *,
    max_frame_size: int = DEFAULT_MAX_FRAME,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> TcpStream:
    """Open a TCP connection to the first of ``host``'s addresses that answers;
    :class:`TransportError` when it fails or times out."""
    check_limit(max_frame_size, "max_frame_size")
    try:
        async with asyncio.timeout(timeout):
            addresses = await resolve(host, port, timeout=timeout)
            reader, writer = await connect_first(
                addresses, lambda a, p, f: asyncio.open_connection(a, p, family=f)
            )
    except TimeoutError:
        raise TransportError(
            f"connecting to {format_address('tcp', host, port)} timed out"
        ) from None
    except OSError as exc:
        raise TransportError(
            f"cannot connect to {format_address('tcp', host, port)}: {describe_cause(exc)}"
        ) from None
    return TcpStream(reader, writer, max_frame_size)


class TcpListener(StreamListenerBase):
    """A TCP server; each accepted connection runs the handler with a :class:`TcpStream`."""

    _server: asyncio.Server | None = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._admit(TcpStream(reader, writer, self._max_frame_size))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        await self._close_streams()
        if self._server is not None:
            await self._server.wait_closed()


async def serve_tcp(
    host: str,
    port: int,
    handler: Callable[[FrameStream], Awaitable[None]],
    *,
    max_frame_size: int = DEFAULT_MAX_FRAME,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> TcpListener:
    """Listen on ``host:port`` (port 0 picks a free port; see ``listener.url``)."""
    check_limit(max_frame_size, "max_frame_size")
    check_limit(max_connections, "max_connections")
    listener = TcpListener(handler, max_frame_size, max_connections)
    try:
        server = await asyncio.start_server(listener._accept, host, port)
    except OSError as exc:
        raise TransportError(
            f"cannot listen on {format_address('tcp', host, port)}: {describe_cause(exc)}"
        ) from None
    listener._server = server
    bound = server.sockets[0].getsockname()
    listener.url = format_address("tcp", str(bound[0]), int(bound[1]))
    return listener
