"""The HTTP(S) listener the A2A app (:mod:`sealwire.transport._http_server`) runs on.

:func:`serve_http` serves an ASGI app over HTTP/1.1 (:mod:`._http1`, on h11) and,
when TLS negotiates ``h2`` by ALPN, HTTP/2 (:mod:`._http2`, on h2). Each scope
carries the ASGI TLS extension (``client_cert_chain`` in PEM, ``tls_version``,
``alpn_protocol``): the TLS binding authenticates callers by that certificate. TLS
is Python's ``ssl`` (an ``ssl.SSLContext``), or a :class:`TlsLayer` a plugin brings
(sealwire-tls runs pyOpenSSL for X25519MLKEM768, which Python's ``ssl`` cannot
negotiate): the listener, its sockets, its close sequence and the HTTP stack are
the same for both.

Why a server of our own on h11 and h2 (the sans-I/O HTTP libraries hypercorn and
httpx are built on) rather than an ASGI server: none hands the app the client's
certificate (hypercorn, uvicorn and daphne implement no ASGI TLS extension), none
takes a TLS stack other than Python's ``ssl``, and the per-connection work is what
a new mutual-TLS connection costs (``benchmarks/bench_tls.py`` prints it beside
hypercorn and uvicorn serving a trivial app).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl as ssl_module
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from sealwire.errors import ConfigurationError, describe_cause
from sealwire.transport._http1 import Http1Connection
from sealwire.transport._http2 import Http2Connection
from sealwire.transport._http_stream import App, ByteReader, ByteWriter

__all__ = [
    "CLOSE_GRACE",
    "HttpListener",
    "TlsConnection",
    "TlsLayer",
    "serve_http",
    "tls_extension",
]

log = logging.getLogger("sealwire.transport._http_server")
"""The logger the listener had when it lived beside the app (operators' filters)."""

CLOSE_GRACE = 1.0
"""Seconds connections get to finish when the listener closes, before being cancelled."""
HANDSHAKE_TIMEOUT = 10.0
"""Seconds a TLS handshake may take before the connection is dropped."""
LISTEN_BACKLOG = 128
"""Connections the kernel queues before they are accepted."""


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


class HttpListener:
    """A running HTTP(S) server: its ``url`` and ``close()``."""

    def __init__(self, app: App) -> None:
        self.url = ""
        self._app = app
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connections: set[Http1Connection | Http2Connection] = set()
        self._closed = False

    async def serve(
        self, reader: ByteReader, writer: ByteWriter, tls: Mapping[str, Any] | None
    ) -> None:
        """Serve one accepted connection (in its own task) until it ends."""
        if self._closed:
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None and task not in self._tasks:
            self._track(task)
        scope = {
            "scheme": "http" if tls is None else "https",
            "client": _address(writer.get_extra_info("peername")),
            "server": _address(writer.get_extra_info("sockname")),
            "extensions": {"http.response.trailers": {}, **({} if tls is None else {"tls": tls})},
        }
        connection: Http1Connection | Http2Connection
        if tls is not None and tls.get("alpn_protocol") == "h2":
            connection = Http2Connection(self._app, reader, writer, scope)
        else:
            connection = Http1Connection(self._app, reader, writer, scope)
        self._connections.add(connection)
        try:
            # A peer closing uncleanly (TLS alerts, a bad record) ends only its own
            # connection; it is no server error.
            with contextlib.suppress(ssl_module.SSLError, OSError):
                await connection.run()
        finally:
            self._connections.discard(connection)

    def start(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` (a connection's TLS handshake, then :meth:`serve`) as a task
        :meth:`close` waits for."""
        self._track(asyncio.get_running_loop().create_task(coroutine))

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop accepting, let connections finish for :data:`CLOSE_GRACE`, cancel the rest."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.shutdown()
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=CLOSE_GRACE)
            for task in pending:
                task.cancel()
            # Bounded too: an app that ignores its cancellation must not hold close().
            if pending:
                _done, stuck = await asyncio.wait(pending, timeout=CLOSE_GRACE)
                for task in stuck:
                    task.add_done_callback(_retrieve)
                if stuck:
                    log.warning("%d HTTP connection(s) did not end when cancelled", len(stuck))
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), CLOSE_GRACE)

    async def __aenter__(self) -> HttpListener:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _address(value: Any) -> tuple[str, int] | None:
    """An ASGI ``client``/``server``: host and port (an IPv6 address's flow and scope dropped)."""
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None


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
    app: Callable[..., Any],
    url: str,
    *,
    ssl: ssl_module.SSLContext | None = None,
    tls_layer: TlsLayer | None = None,
) -> HttpListener:
    """Serve ``app`` at ``url`` (``http://``, or ``https://`` with ``ssl`` or
    ``tls_layer``; port 0: a free one).

    With TLS, HTTP/2 is served when the client negotiates ``h2`` by ALPN: the
    caller sets the ALPN protocols (``["h2", "http/1.1"]`` for both) on its context
    (or in its layer, whose connections name it in their TLS extension).
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
    loop = asyncio.get_running_loop()
    listener = HttpListener(app)

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _no_delay(writer.get_extra_info("socket"))
        ssl_object = writer.get_extra_info("ssl_object")
        tls = None if ssl_object is None else _tls_extension(ssl_object)
        # Python 3.11's start_server logs a handler task that ends cancelled as an error
        # ("Exception in callback"): a connection cancelled at close ends here quietly.
        with contextlib.suppress(asyncio.CancelledError):
            await listener.serve(reader, writer, tls)

    async def on_layered(connection: TlsConnection) -> None:
        _no_delay(connection.get_extra_info("socket"))
        tls = await connection.secure()
        if tls is not None:
            await listener.serve(connection, connection, tls)

    if tls_layer is None:
        listener._server = await asyncio.start_server(
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
            listener.start(on_layered(connection))

        listener._server = await loop.create_server(lambda: layer.accept(opened), sock=sock)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    listener.url = f"{parts.scheme}://{shown}:{bound[1]}{parts.path or ''}"
    return listener
