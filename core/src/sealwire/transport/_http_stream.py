"""What the HTTP/1.1 and HTTP/2 connections (:mod:`._http1`, :mod:`._http2`) run on.

A connection reads and writes plaintext through two small protocols, met both by
asyncio's ``StreamReader``/``StreamWriter`` (Python's ``ssl``, or no TLS) and by a
plugin's :class:`~sealwire.transport.http.TlsConnection` (its own TLS stack).
Both versions also share their read size, keep-alive bound, ``Date`` header and the
scope of a request given as a header list (HTTP/2, and sealwire-tls's HTTP/3).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol
from urllib.parse import unquote

__all__ = [
    "ASGI_VERSION",
    "KEEP_ALIVE_TIMEOUT",
    "READ_CHUNK",
    "App",
    "ByteReader",
    "ByteWriter",
    "http_date",
    "request_scope",
]

KEEP_ALIVE_TIMEOUT = 5.0
"""Seconds an idle connection may take to send a whole request head (HTTP/1.1) or a
new request (HTTP/2) before it is closed (hypercorn's and uvicorn's default: clients'
pools expect about this)."""
READ_CHUNK = 64 * 1024
"""Bytes asked of the socket per read."""

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
"""An ASGI 3 application."""


class ByteReader(Protocol):
    def read(self, n: int) -> Awaitable[bytes]:
        """Up to ``n`` bytes; ``b""`` at the end. :raises OSError: the connection broke."""
        ...


class ByteWriter(Protocol):
    def write(self, data: bytes) -> None:
        """Queue ``data``. :raises OSError: the connection is closed (some stacks)."""
        ...

    def drain(self) -> Awaitable[None]:
        """Wait until the queue is below its high-water mark. :raises OSError:"""
        ...

    def close(self) -> None:
        """Close the connection (a TLS close_notify first, where there is TLS)."""
        ...

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The transport's extra info (``peername``, ``sockname``, ``socket``)."""
        ...


_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The ``Date`` header's value (RFC 9110 §6.6.1), formatted once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True).encode("ascii"))
    return _date_cache[1]


ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}
"""A scope's ``asgi`` key."""
_CONNECTION_HEADERS = frozenset({b"connection", b"keep-alive", b"transfer-encoding"})
"""Connection-specific request headers, which HTTP/2 and HTTP/3 forbid: not shown to the app."""


def request_scope(
    headers: Iterable[tuple[bytes, bytes]], base: dict[str, Any], http_version: str
) -> dict[str, Any] | None:
    """The ASGI HTTP scope of an HTTP/2 or HTTP/3 request (its header list, pseudo-headers
    first, already checked by h2 or aioquic), None if it is unusable. ``base`` holds the
    connection's part (scheme, client, server, extensions); ``:authority`` becomes ``host``
    as HTTP/1.1 presents it."""
    pseudo: dict[bytes, bytes] = {}
    plain: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name.startswith(b":"):
            pseudo[name] = value
        elif name not in _CONNECTION_HEADERS:
            plain.append((name, value))
    raw_path = pseudo.get(b":path", b"")
    path, _, query = raw_path.partition(b"?")
    method = pseudo.get(b":method", b"")
    if not path.startswith(b"/") or not method.isalpha() or not method.isascii():
        return None
    if b":authority" in pseudo and not any(n == b"host" for n, _ in plain):
        plain.insert(0, (b"host", pseudo[b":authority"]))
    return {
        **base,
        "type": "http",
        "asgi": ASGI_VERSION,
        "http_version": http_version,
        "method": method.decode("ascii").upper(),
        "path": unquote(path.decode("latin-1")),
        "raw_path": path,
        "query_string": query,
        "root_path": "",
        "headers": plain,
    }
