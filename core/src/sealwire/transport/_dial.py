"""Connect and serve by URL: ``tcp://``, ``ws://``, ``wss://`` and ``udp://``."""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from sealwire.errors import ConfigurationError
from sealwire.transport._base import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_DATAGRAM,
    DEFAULT_MAX_FRAME,
    DatagramEndpoint,
    FrameStream,
    Listener,
)
from sealwire.transport._tcp import DEFAULT_MAX_CONNECTIONS, connect_tcp, serve_tcp
from sealwire.transport._udp import (
    UDP_CLIENT_IDLE_SECONDS,
    UDP_IDLE_SECONDS,
    UDP_MAX_PEERS,
    connect_udp,
    serve_udp,
)
from sealwire.transport._websocket import connect_websocket, serve_websocket

__all__ = ["STREAM_SCHEMES", "connect", "connect_datagram", "serve", "serve_datagram"]

STREAM_SCHEMES = ("tcp", "ws", "wss")
DATAGRAM_SCHEMES = ("udp",)


def _host_port(url: str, schemes: tuple[str, ...], *, server: bool) -> tuple[str, str, int]:
    """Split ``scheme://host:port``; ConfigurationError names what is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"malformed transport URL {url!r}") from None
    if parts.scheme not in schemes:
        raise ConfigurationError(f"unsupported scheme in {url!r}: expected one of {schemes}")
    host = parts.hostname
    if not host:
        raise ConfigurationError(f"transport URL {url!r} has no host")
    if any(c <= " " or c == "\x7f" for c in host):  # would reach the resolver as it is
        raise ConfigurationError(f"malformed transport URL {url!r}: a space or control character")
    if port is None:
        if parts.scheme == "ws" and not server:
            port = 80
        elif parts.scheme == "wss" and not server:
            port = 443
        else:
            raise ConfigurationError(f"transport URL {url!r} has no port")
    return parts.scheme, host, port


async def connect(
    url: str,
    *,
    max_frame_size: int = DEFAULT_MAX_FRAME,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ssl: ssl_module.SSLContext | None = None,
) -> FrameStream:
    """Open a :class:`FrameStream` to a ``tcp://``, ``ws://`` or ``wss://`` URL.

    :raises ConfigurationError: the URL is malformed or its scheme unsupported.
    :raises TransportError: the connection failed or timed out.
    """
    scheme, host, port = _host_port(url, STREAM_SCHEMES, server=False)
    if scheme == "tcp":
        return await connect_tcp(host, port, max_frame_size=max_frame_size, timeout=timeout)
    return await connect_websocket(url, max_frame_size=max_frame_size, timeout=timeout, ssl=ssl)


async def serve(
    url: str,
    handler: Callable[[FrameStream], Awaitable[None]],
    *,
    max_frame_size: int = DEFAULT_MAX_FRAME,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ssl: ssl_module.SSLContext | None = None,
) -> Listener:
    """Serve a ``tcp://`` or ``ws://`` URL (``wss://`` needs ``ssl``); port 0 picks one.

    ``handler`` runs once per connection; when it returns or raises, the
    connection is closed (a failure is logged by type, never with payload).
    """
    scheme, host, port = _host_port(url, STREAM_SCHEMES, server=True)
    if scheme == "tcp":
        return await serve_tcp(
            host, port, handler, max_frame_size=max_frame_size, max_connections=max_connections
        )
    if (scheme == "wss") != (ssl is not None):
        raise ConfigurationError("serve wss:// with an ssl context, ws:// without one")
    return await serve_websocket(
        host,
        port,
        handler,
        path=urlsplit(url).path or "/",
        max_frame_size=max_frame_size,
        max_connections=max_connections,
        ssl=ssl,
    )


async def connect_datagram(
    url: str,
    *,
    max_datagram_size: int = DEFAULT_MAX_DATAGRAM,
    idle_timeout: float = UDP_CLIENT_IDLE_SECONDS,
) -> DatagramEndpoint:
    """A :class:`DatagramEndpoint` to a ``udp://host:port`` URL, closed after
    ``idle_timeout`` seconds without a datagram from the peer."""
    _, host, port = _host_port(url, DATAGRAM_SCHEMES, server=False)
    return await connect_udp(
        host, port, max_datagram_size=max_datagram_size, idle_timeout=idle_timeout
    )


async def serve_datagram(
    url: str,
    handler: Callable[[DatagramEndpoint], Awaitable[None]],
    *,
    max_datagram_size: int = DEFAULT_MAX_DATAGRAM,
    max_peers: int = UDP_MAX_PEERS,
    idle_timeout: float = UDP_IDLE_SECONDS,
) -> Listener:
    """Serve ``udp://host:port``: one endpoint and one ``handler`` run per remote address;
    a peer silent for ``idle_timeout`` seconds has its endpoint closed."""
    _, host, port = _host_port(url, DATAGRAM_SCHEMES, server=True)
    return await serve_udp(
        host, port, handler, max_datagram_size=max_datagram_size, max_peers=max_peers,
        idle_timeout=idle_timeout,
    )  # fmt: skip
