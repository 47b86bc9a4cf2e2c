"""Frame streams over WebSocket (RFC 6455): one binary message per frame.

Built on the ``websockets`` asyncio API. Compression is off: the frames are
ciphertext, which does not compress, and compressing secrets before
encryption is what CRIME/BREACH exploit.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from sealwire.errors import DecodeError, describe_cause
from sealwire.transport._base import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_FRAME,
    FrameStream,
    FrameTooLargeError,
    StreamListenerBase,
    TransportClosed,
    TransportError,
    check_limit,
    check_size,
    format_address,
)
from sealwire.transport._tcp import DEFAULT_MAX_CONNECTIONS

__all__ = ["WebSocketListener", "WebSocketStream", "connect_websocket", "serve_websocket"]

log = logging.getLogger("sealwire.transport")

WS_MAX_QUEUE = 4
"""Received messages buffered before reading pauses; memory per connection is
at most this times ``max_frame_size`` (``websockets`` defaults to 16)."""

_MESSAGE_TOO_BIG = 1009  # RFC 6455 section 7.4.1 close code


class WebSocketStream:
    """A :class:`FrameStream` over one WebSocket connection."""

    def __init__(
        self, ws: ClientConnection | ServerConnection, max_frame_size: int, scheme: str
    ) -> None:
        self.max_frame_size = max_frame_size
        remote = ws.remote_address
        if isinstance(remote, tuple) and len(remote) >= 2:
            self.peer_address = format_address(scheme, str(remote[0]), int(remote[1]))
        else:
            self.peer_address = f"{scheme}://unknown"
        self._ws = ws
        self._send_lock = asyncio.Lock()
        self._closed = False

    async def send(self, frame: bytes) -> None:
        check_size(len(frame), self.max_frame_size)
        if self._closed:
            raise TransportClosed("stream closed")
        async with self._send_lock:  # websockets allows one sender at a time
            try:
                await self._ws.send(bytes(frame))
            except ConnectionClosed:
                raise TransportClosed("websocket closed") from None

    async def receive(self) -> bytes:
        if self._closed:
            raise TransportClosed("stream closed")
        try:
            message = await self._ws.recv()
        except ConnectionClosed as exc:
            we_refused = exc.sent is not None and not exc.rcvd_then_sent
            if we_refused and exc.sent is not None and exc.sent.code == _MESSAGE_TOO_BIG:
                raise FrameTooLargeError(None, self.max_frame_size) from None
            raise TransportClosed("websocket closed") from None
        if isinstance(message, str):
            await self.close()
            raise DecodeError("text message where a binary frame was expected", field="websocket")
        return message

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._ws.close()

    def __repr__(self) -> str:
        return f"<WebSocketStream {self.peer_address} closed={self._closed}>"


def _common_options(max_frame_size: int) -> dict[str, Any]:
    return {"max_size": max_frame_size, "max_queue": WS_MAX_QUEUE, "compression": None}


async def connect_websocket(
    url: str,
    *,
    max_frame_size: int = DEFAULT_MAX_FRAME,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ssl: ssl_module.SSLContext | None = None,
) -> WebSocketStream:
    """Open a WebSocket (``ws://`` or ``wss://``); :class:`TransportError` on failure."""
    check_limit(max_frame_size, "max_frame_size")
    options = _common_options(max_frame_size)
    if ssl is not None:
        options["ssl"] = ssl
    try:
        ws = await ws_connect(url, open_timeout=timeout, **options)
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError, UnicodeError) as exc:
        # UnicodeError: a host name IDNA cannot encode (a label over 63 characters)
        raise TransportError(f"cannot connect to {url}: {describe_cause(exc)}") from None
    return WebSocketStream(ws, max_frame_size, url.split(":", 1)[0])


class WebSocketListener(StreamListenerBase):
    """A WebSocket server; each connection runs the handler with a :class:`WebSocketStream`."""

    _server: Server | None = None

    def __init__(
        self,
        handler: Callable[[FrameStream], Awaitable[None]],
        max_frame_size: int,
        max_connections: int,
        scheme: str,
    ) -> None:
        super().__init__(handler, max_frame_size, max_connections)
        self._scheme = scheme

    async def _accept(self, ws: ServerConnection) -> None:
        await self._admit(WebSocketStream(ws, self._max_frame_size, self._scheme))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._close_streams()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def serve_websocket(
    host: str,
    port: int,
    handler: Callable[[FrameStream], Awaitable[None]],
    *,
    path: str = "/",
    max_frame_size: int = DEFAULT_MAX_FRAME,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ssl: ssl_module.SSLContext | None = None,
) -> WebSocketListener:
    """Serve WebSocket connections on ``host:port`` (``wss`` when ``ssl`` is given)."""
    check_limit(max_frame_size, "max_frame_size")
    check_limit(max_connections, "max_connections")
    scheme = "wss" if ssl is not None else "ws"
    listener = WebSocketListener(handler, max_frame_size, max_connections, scheme)
    options = _common_options(max_frame_size)
    if ssl is not None:
        options["ssl"] = ssl
    try:
        server = await ws_serve(listener._accept, host, port, **options)
    except OSError as exc:
        raise TransportError(
            f"cannot listen on {format_address(scheme, host, port)}: {describe_cause(exc)}"
        ) from None
    listener._server = server
    bound = next(iter(server.sockets)).getsockname()
    listener.url = format_address(scheme, str(bound[0]), int(bound[1])) + path
    return listener
