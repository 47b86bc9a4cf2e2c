"""The HTTP(S) listener the A2A app (:mod:`sealwire.transport._http_server`) runs on.

:func:`serve_http` runs an app on hypercorn (HTTP/1.1, and HTTP/2 when TLS
negotiates ``h2``) and adds the ASGI TLS extension (``client_cert_chain`` in
PEM, ``tls_version``) to each connection's scopes, which hypercorn alone does
not. TLS is Python's ``ssl`` (an ``ssl.SSLContext``), or a :class:`TlsLayer` a
plugin brings (sealwire-tls runs pyOpenSSL for X25519MLKEM768, which Python's
``ssl`` cannot negotiate): the listener, its sockets, its close sequence and the
HTTP stack are the same for both.

Why hypercorn's connection handler (``hypercorn.asyncio.tcp_server.TCPServer``,
not exported by ``hypercorn.asyncio``) and not its public ``hypercorn.asyncio.serve``
(hypercorn 0.18): ``serve`` owns the accept loop and hands the app only what
hypercorn puts in the scope, so

* the client's certificate cannot reach the app: hypercorn does not implement the
  ASGI TLS extension (pgjones/hypercorn#62 and #324, open), and the TLS binding
  authenticates callers by that certificate;
* a TLS stack other than Python's ``ssl`` cannot be used: ``serve`` only takes
  certificate files through its ``Config`` and wraps sockets with ``ssl`` itself, so
  pyOpenSSL's post-quantum groups (sealwire-tls) would need a second listener;
* the TLS shutdown bound is not settable (a close held 30 s, asyncio's default, by
  a peer keeping its socket open; :data:`CLOSE_GRACE` here), nor can a connection's
  socket be set up (``TCP_NODELAY`` on each accepted socket: see ``_no_delay``).

Serving through a plaintext loopback hop (``serve`` behind a TLS proxy that passes
the certificate by the hop's port) would meet all three with public calls only, at
the cost of a second socket and a copy of every byte per connection; it is not worth
it. ``TCPServer(app, loop, config, context, state, reader, writer)`` is therefore
used in one place, in :func:`serve_http`, and pinned by sealwire's ``hypercorn``
requirement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

# Not exported by hypercorn.asyncio: the module docstring says why, and what public
# hypercorn.asyncio.serve cannot do for this listener.
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.utils import wrap_app

from sealwire.errors import ConfigurationError, describe_cause

__all__ = [
    "CLOSE_GRACE",
    "HttpListener",
    "TlsConnection",
    "TlsLayer",
    "serve_http",
    "tls_extension",
]

log = logging.getLogger("sealwire.transport._http_server")
"""The logger the listener had when it lived beside the app: hypercorn's errors keep
their logger name (operators' filters) though the code moved."""

CLOSE_GRACE = 1.0
"""Seconds connections get to finish when the listener closes, before being cancelled."""
HANDSHAKE_TIMEOUT = 10.0
"""Seconds a TLS handshake may take before the connection is dropped."""
LISTEN_BACKLOG = 128
"""Connections the kernel queues before they are accepted."""
MAX_INCOMPLETE_REQUEST = 64 * 1024
"""Bytes of an HTTP/1.1 request head hypercorn buffers before refusing it."""
READ_CHUNK = 64 * 1024
"""Bytes asked of a :class:`TlsConnection` per read (hypercorn's own read size)."""


def tls_extension(
    client_der: bytes | None, tls_version: int | None, alpn: str | None
) -> dict[str, Any]:
    """The ASGI TLS extension (asgiref specs/tls.rst) of one connection: the client's
    certificate (PEM, if it sent one), the TLS version number and the ALPN protocol."""
    chain = [] if client_der is None else [ssl_module.DER_cert_to_PEM_cert(client_der)]
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": tls_version,
        "cipher_suite": None,
        "alpn_protocol": alpn,
    }


def _tls_extension(ssl_object: Any) -> dict[str, Any]:
    versions = {"TLSv1.3": 0x0304, "TLSv1.2": 0x0303}
    return tls_extension(
        ssl_object.getpeercert(binary_form=True),
        versions.get(ssl_object.version() or ""),
        ssl_object.selected_alpn_protocol(),
    )


class _WithTls:
    """The app, with the connection's TLS extension added to each scope."""

    def __init__(self, app: Callable[..., Awaitable[None]], tls: Mapping[str, Any] | None) -> None:
        self._app = app
        self._tls = tls

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._tls is not None and scope["type"] == "http":
            scope = {**scope, "extensions": {**scope.get("extensions", {}), "tls": self._tls}}
        await self._app(scope, receive, send)


class TlsConnection(Protocol):
    """One accepted connection under a :class:`TlsLayer`: its TLS handshake, then its
    plaintext, read and written by the HTTP stack as a stream."""

    async def secure(self) -> Mapping[str, Any] | None:
        """Run the handshake (bounded in time by the layer). Returns the connection's
        ASGI TLS extension (:func:`tls_extension`, plus anything the app reads, e.g.
        the negotiated group), or None when the connection is refused (the layer has
        closed it and logged why)."""
        ...

    async def read(self, size: int) -> bytes:
        """Up to ``size`` plaintext bytes; ``b""`` at the end. :raises OSError: the
        connection broke (a bad record, a reset)."""
        ...

    def write(self, data: bytes) -> None:
        """Send plaintext. :raises OSError: the connection is closed."""
        ...

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its high-water mark."""
        ...

    def close(self) -> None:
        """Close (with the TLS close notification when the handshake completed)."""
        ...

    async def wait_closed(self) -> None:
        """Wait until the transport is closed."""
        ...

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The transport's extra info (``peername``, ``socket``, ...)."""
        ...


class TlsLayer(Protocol):
    """A TLS stack :func:`serve_http` runs instead of Python's ``ssl``.

    For each TCP connection the listener accepts, it calls :meth:`accept`; the
    asyncio protocol returned is the transport's, and ``on_open`` must be called
    with the connection's :class:`TlsConnection` from ``connection_made``. The
    listener then awaits :meth:`TlsConnection.secure` and serves HTTP on the
    plaintext; closing the listener closes the connections still open after
    :data:`CLOSE_GRACE`.
    """

    def accept(self, on_open: Callable[[TlsConnection], None]) -> asyncio.BaseProtocol:
        """The protocol of a connection just accepted."""
        ...


class _LayerReader:
    """A :class:`TlsConnection`'s plaintext as hypercorn reads a StreamReader."""

    def __init__(self, connection: TlsConnection) -> None:
        self._connection = connection
        self._done = False

    def at_eof(self) -> bool:
        return self._done

    async def read(self, size: int = READ_CHUNK) -> bytes:
        try:
            data = await self._connection.read(size)
        except OSError:
            self._done = True
            raise
        if not data:
            self._done = True
        return data


class _LayerWriter:
    """A :class:`TlsConnection`'s plaintext as hypercorn writes a StreamWriter."""

    def __init__(self, connection: TlsConnection) -> None:
        self._connection = connection

    def write(self, data: bytes) -> None:
        self._connection.write(data)

    async def drain(self) -> None:
        await self._connection.drain()

    def write_eof(self) -> None:
        raise NotImplementedError("TLS has close_notify, sent on close")

    def close(self) -> None:
        self._connection.close()

    async def wait_closed(self) -> None:
        await self._connection.wait_closed()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._connection.get_extra_info(name, default)


class HttpListener:
    """A running HTTP(S) server: its ``url`` and ``close()``."""

    def __init__(self, url: str, server: asyncio.Server, context: WorkerContext) -> None:
        self.url = url
        self._server = server
        self._context = context
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connections: set[TlsConnection] = set()
        self._closed = False

    def _track(self, task: asyncio.Task[Any], connection: TlsConnection | None = None) -> None:
        self._tasks.add(task)
        if connection is not None:
            self._connections.add(connection)

        def done(finished: asyncio.Task[Any]) -> None:
            self._tasks.discard(finished)
            if connection is not None:
                self._connections.discard(connection)

        task.add_done_callback(done)

    async def close(self) -> None:
        """Stop accepting, let connections finish for :data:`CLOSE_GRACE`, close and
        cancel the rest."""
        if self._closed:
            return
        self._closed = True
        self._server.close()
        await self._context.terminated.set()
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=CLOSE_GRACE)
            for connection in list(self._connections):
                connection.close()
            for task in pending:
                task.cancel()
            # Bounded too: hypercorn swallows a cancellation that lands while it closes
            # the socket, and its connection may then wait on an app that never ends.
            if pending:
                _done, stuck = await asyncio.wait(pending, timeout=CLOSE_GRACE)
                for task in stuck:
                    task.add_done_callback(_retrieve)
                if stuck:
                    log.warning("%d HTTP connection(s) did not end when cancelled", len(stuck))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), CLOSE_GRACE)

    async def __aenter__(self) -> HttpListener:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Fetch a left-behind connection's outcome when it ends (no "never retrieved")."""
    if not task.cancelled():
        task.exception()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {describe_cause(exc)}") from None
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


def _no_delay(sock: socket.socket | None) -> None:
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        # Headers and body go out as separate writes: without this, Nagle's algorithm
        # and the peer's delayed ACK add ~40 ms to every answer.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def serve_http(
    app: Callable[..., Awaitable[None]],
    url: str,
    *,
    ssl: ssl_module.SSLContext | None = None,
    tls_layer: TlsLayer | None = None,
) -> HttpListener:
    """Serve ``app`` at ``url`` (``http://``, or ``https://`` with ``ssl`` or
    ``tls_layer``; port 0: a free one).

    With TLS, HTTP/2 is served when the client negotiates ``h2`` by ALPN: the
    caller sets the ALPN protocols (``["h2", "http/1.1"]`` for both) on its context
    (or in its layer, whose ``get_extra_info("ssl_object")`` must then give an object
    with ``selected_alpn_protocol()``, as hypercorn asks).
    """
    parts = urlsplit(url)
    secure = ssl is not None or tls_layer is not None
    if (
        parts.scheme not in ("http", "https")
        or (parts.scheme == "https") != secure
        or (ssl is not None and tls_layer is not None)
    ):
        raise ConfigurationError(
            f"serve_http needs an http:// URL, or https:// with one TLS (ssl or tls_layer): {url}"
        )
    host = parts.hostname or "127.0.0.1"
    sock = _bind(host, parts.port or 0)
    config = Config()
    config.graceful_timeout = CLOSE_GRACE
    config.accesslog = None
    config.errorlog = log
    config.h11_max_incomplete_size = MAX_INCOMPLETE_REQUEST
    context = WorkerContext(None)
    loop = asyncio.get_running_loop()
    listener: HttpListener

    async def serve_connection(tls: Mapping[str, Any] | None, reader: Any, writer: Any) -> None:
        wrapped = wrap_app(cast(Any, _WithTls(app, tls)), config.wsgi_max_body_size, "asgi")
        # A peer closing uncleanly (TLS alerts, data after close_notify, a bad record)
        # ends only its own connection; it is no server error.
        with contextlib.suppress(ssl_module.SSLError, OSError):
            await TCPServer(wrapped, loop, config, context, {}, reader, writer)

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            listener._track(task)
        _no_delay(writer.get_extra_info("socket"))
        ssl_object = writer.get_extra_info("ssl_object")
        tls = None if ssl_object is None else _tls_extension(ssl_object)
        await serve_connection(tls, reader, writer)

    async def on_layered(connection: TlsConnection) -> None:
        _no_delay(connection.get_extra_info("socket"))
        tls = await connection.secure()
        if tls is not None:
            await serve_connection(tls, _LayerReader(connection), _LayerWriter(connection))

    server: asyncio.Server
    if tls_layer is None:
        server = await asyncio.start_server(
            on_connection, sock=sock, ssl=ssl,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT if ssl else None,
            # a connection cut at close waits this long for the peer's close_notify
            # (asyncio's default, 30 s, held close() that long for a peer keeping its
            # socket open)
            ssl_shutdown_timeout=CLOSE_GRACE if ssl else None,
        )  # fmt: skip
    else:
        layer = tls_layer

        def opened(connection: TlsConnection) -> None:
            listener._track(loop.create_task(on_layered(connection)), connection)

        server = await loop.create_server(lambda: layer.accept(opened), sock=sock)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    path = parts.path or ""
    listener = HttpListener(f"{parts.scheme}://{shown}:{bound[1]}{path}", server, context)
    return listener
