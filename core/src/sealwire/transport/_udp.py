"""Datagram endpoints over UDP.

A client endpoint is a connected UDP socket. A server binds one socket and
demultiplexes by remote address: each new address gets its own
:class:`DatagramEndpoint` and its own handler task. Datagrams are lost rather
than queued without bound, as UDP itself would lose them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from sealwire.errors import describe_cause
from sealwire.transport._base import (
    DEFAULT_MAX_DATAGRAM,
    DatagramEndpoint,
    ListenerBase,
    TransportClosed,
    TransportError,
    check_limit,
    check_size,
    format_address,
    run_handler,
)
from sealwire.transport._resolve import resolve

__all__ = ["UdpEndpoint", "UdpListener", "connect_udp", "serve_udp"]

log = logging.getLogger("sealwire.transport")

UDP_QUEUE = 256
"""Datagrams queued per endpoint before new ones are dropped (a slow handler
must not make us buffer without bound)."""

UDP_MAX_PEERS = 1024
"""Remote addresses a server serves at once; datagrams from more are dropped
(each peer costs a handler task and a queue, and source addresses are cheap to forge)."""

UDP_IDLE_SECONDS = 300.0
"""A server closes the endpoint of a peer silent this long, giving its slot back (a
forged or abandoned session must not hold one for good)."""

UDP_CLIENT_IDLE_SECONDS = 240.0
"""A client closes its endpoint after this long without an answer, before the
server forgets the session: its next call opens a fresh one."""

UDP_SWEEP_SECONDS = 5.0
"""How often idle endpoints are looked for (at most; a quarter of the timeout if shorter)."""

UDP_WRITE_BUFFER_LIMIT = 1024 * 1024
"""Bytes the kernel-side send buffer may back up in asyncio before we drop datagrams."""

Address = tuple[Any, ...]


def _buffered(transport: asyncio.DatagramTransport) -> int:
    """Bytes waiting in asyncio's send buffer (the selector transports have the method)."""
    size = getattr(transport, "get_write_buffer_size", None)
    return int(size()) if size is not None else 0


class UdpEndpoint:
    """A :class:`DatagramEndpoint` to one remote address."""

    def __init__(
        self,
        transport: asyncio.DatagramTransport,
        remote: Address | None,
        peer_address: str,
        max_datagram_size: int,
        on_close: Callable[[UdpEndpoint], None] | None = None,
    ) -> None:
        self.max_datagram_size = max_datagram_size
        self.peer_address = peer_address
        self.dropped = 0
        self._transport = transport
        self._remote = remote  # None: the socket is connected
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(UDP_QUEUE)
        self._on_close = on_close
        self._closed = False
        self.last_received = time.monotonic()
        """When the last datagram from the peer came (``time.monotonic()``)."""
        self._watch: asyncio.Task[None] | None = None

    def watch(self, task: asyncio.Task[None]) -> None:
        """Cancel ``task`` (the endpoint's idle watch) when the endpoint closes."""
        self._watch = task

    def _deliver(self, datagram: bytes) -> None:
        if self._closed or self._queue.full() or len(datagram) > self.max_datagram_size:
            self.dropped += 1
            return
        self.last_received = time.monotonic()
        self._queue.put_nowait(datagram)

    async def send(self, datagram: bytes) -> None:
        check_size(len(datagram), self.max_datagram_size, "datagram length")
        if self._closed or self._transport.is_closing():
            raise TransportClosed("endpoint closed")
        if _buffered(self._transport) > UDP_WRITE_BUFFER_LIMIT:
            self.dropped += 1
            return
        if self._remote is None:
            self._transport.sendto(bytes(datagram))
        else:
            self._transport.sendto(bytes(datagram), self._remote)

    async def receive(self) -> bytes:
        if self._closed:
            raise TransportClosed("endpoint closed")
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # keep later receivers failing too
            raise TransportClosed("endpoint closed")
        return item

    def _mark_closed(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watch is not None and self._watch is not asyncio.current_task():
            self._watch.cancel()
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)
        if self._on_close is not None:
            self._on_close(self)

    async def close(self) -> None:
        if self._closed:
            return
        self._mark_closed()
        if self._on_close is None:  # a client owns its socket
            self._transport.close()

    def __repr__(self) -> str:
        return f"<UdpEndpoint {self.peer_address} closed={self._closed}>"


class _ClientProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.endpoint: UdpEndpoint | None = None

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.endpoint is not None:
            self.endpoint._deliver(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable) are normal on UDP: the peer may come later.
        log.debug("udp error: %s", type(exc).__name__)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.endpoint is not None:
            self.endpoint._mark_closed()


def _idle(endpoints: list[UdpEndpoint], idle_timeout: float) -> list[UdpEndpoint]:
    """Those of ``endpoints`` silent for ``idle_timeout`` seconds (logged)."""
    cutoff = time.monotonic() - idle_timeout
    silent = [e for e in endpoints if e.last_received < cutoff]
    for endpoint in silent:
        log.info("closing %s: silent for %.0f s", endpoint.peer_address, idle_timeout)
    return silent


def _sweep_interval(idle_timeout: float) -> float:
    return min(idle_timeout / 4, UDP_SWEEP_SECONDS)


async def _close_client_when_idle(endpoint: UdpEndpoint, idle_timeout: float) -> None:
    while not endpoint._closed:
        await asyncio.sleep(_sweep_interval(idle_timeout))
        if _idle([endpoint], idle_timeout):
            await endpoint.close()


async def connect_udp(
    host: str,
    port: int,
    *,
    max_datagram_size: int = DEFAULT_MAX_DATAGRAM,
    idle_timeout: float = UDP_CLIENT_IDLE_SECONDS,
) -> UdpEndpoint:
    """A connected UDP endpoint to ``host:port``, closed after ``idle_timeout`` seconds
    without a datagram from the peer."""
    check_limit(max_datagram_size, "max_datagram_size")
    loop = asyncio.get_running_loop()
    family, sockaddr = (await resolve(host, port, kind=socket.SOCK_DGRAM))[0]
    try:
        transport, protocol = await loop.create_datagram_endpoint(
            _ClientProtocol, remote_addr=sockaddr, family=family
        )
    except OSError as exc:
        raise TransportError(
            f"cannot open {format_address('udp', host, port)}: {describe_cause(exc)}"
        ) from None
    peer = format_address("udp", host, port)
    endpoint = UdpEndpoint(transport, None, peer, max_datagram_size)
    protocol.endpoint = endpoint
    endpoint.watch(asyncio.ensure_future(_close_client_when_idle(endpoint, idle_timeout)))
    return endpoint


class UdpListener(ListenerBase, asyncio.DatagramProtocol):
    """A UDP server: one socket, one :class:`UdpEndpoint` and handler per remote address."""

    def __init__(
        self,
        handler: Callable[[DatagramEndpoint], Awaitable[None]],
        max_datagram_size: int,
        max_peers: int,
        idle_timeout: float = UDP_IDLE_SECONDS,
    ) -> None:
        super().__init__()
        self.url = ""
        self.dropped = 0
        self._handler = handler
        self._max_datagram_size = max_datagram_size
        self._max_peers = max_peers
        self._peers: dict[Address, UdpEndpoint] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._idle_timeout = idle_timeout
        self._sweeper: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._sweeper = asyncio.ensure_future(self._sweep())

    async def _sweep(self) -> None:
        """Close the endpoints of peers silent for the idle timeout: a session nobody
        speaks in (forged, or its peer gone) gives its slot back."""
        while True:
            await asyncio.sleep(_sweep_interval(self._idle_timeout))
            for endpoint in _idle(list(self._peers.values()), self._idle_timeout):
                endpoint._mark_closed()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        endpoint = self._peers.get(addr)
        if endpoint is None:
            if self._closed or self._transport is None or len(self._peers) >= self._max_peers:
                self.dropped += 1
                return
            peer = format_address("udp", str(addr[0]), int(addr[1]))
            endpoint = UdpEndpoint(
                self._transport, addr, peer, self._max_datagram_size, self._forget
            )
            self._peers[addr] = endpoint
            self._track(
                asyncio.ensure_future(run_handler(self._handler, endpoint, peer, endpoint.close))
            )
        endpoint._deliver(data)

    def _forget(self, endpoint: UdpEndpoint) -> None:
        if endpoint._remote is not None and self._peers.get(endpoint._remote) is endpoint:
            del self._peers[endpoint._remote]

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", type(exc).__name__)

    def connection_lost(self, exc: Exception | None) -> None:
        for endpoint in list(self._peers.values()):
            endpoint._mark_closed()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for endpoint in list(self._peers.values()):
            endpoint._mark_closed()
        await self._finish_tasks()
        if self._transport is not None:
            self._transport.close()


async def serve_udp(
    host: str,
    port: int,
    handler: Callable[[DatagramEndpoint], Awaitable[None]],
    *,
    max_datagram_size: int = DEFAULT_MAX_DATAGRAM,
    max_peers: int = UDP_MAX_PEERS,
    idle_timeout: float = UDP_IDLE_SECONDS,
) -> UdpListener:
    """Bind ``host:port`` (port 0 picks one) and serve each remote address with ``handler``;
    a peer silent for ``idle_timeout`` seconds has its endpoint closed."""
    check_limit(max_datagram_size, "max_datagram_size")
    check_limit(max_peers, "max_peers")
    listener = UdpListener(handler, max_datagram_size, max_peers, idle_timeout)
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: listener, local_addr=(host, port)
        )
    except OSError as exc:
        raise TransportError(
            f"cannot listen on {format_address('udp', host, port)}: {describe_cause(exc)}"
        ) from None
    bound = transport.get_extra_info("sockname")
    listener.url = format_address("udp", str(bound[0]), int(bound[1]))
    return listener
