"""Serving A2A over TLS 1.3 with X25519MLKEM768: hypercorn on pyOpenSSL connections.

hypercorn takes an ``ssl.SSLContext`` (Python's ``ssl``, no ML-KEM here), but its
connection handler (:class:`hypercorn.asyncio.tcp_server.TCPServer`) only reads
and writes a reader/writer pair and asks the writer for ``ssl_object``
(``selected_alpn_protocol``). So the TCP server here is plain asyncio, each
connection is a :class:`~sealwire_tls._pq.TlsStream` (the handshake runs
first, bounded by :data:`~sealwire_tls._pq.HANDSHAKE_TIMEOUT`), and hypercorn
is handed the plaintext through two small adapters: HTTP/1.1 and HTTP/2 (ALPN
``h2``) are served exactly as on Python's ``ssl``.

Each connection's session (version, suite, group, ALPN) is logged at debug
and put in the ASGI ``tls`` extension beside the client certificate, under
``sealwire_session`` (a :class:`~sealwire_tls._pq.TlsSessionInfo`), where
:meth:`TlsServer.identify <sealwire_tls._server.TlsServer.identify>` applies the
downgrade rule to Sealwire callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import urlsplit

from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.utils import wrap_app
from OpenSSL import SSL

from sealwire.errors import ConfigurationError
from sealwire.transport import TransportError
from sealwire.transport.http import CLOSE_GRACE, tls_extension
from sealwire_tls._pq import (
    READ_CHUNK,
    PostQuantum,
    TlsDowngradeError,
    TlsStream,
    check_group,
)
from sealwire_tls._server import SESSION_KEY

__all__ = ["PqHttpListener", "serve_pq_http"]

log = logging.getLogger(__name__)

MAX_INCOMPLETE_REQUEST = 64 * 1024
"""Bytes of an HTTP/1.1 request head hypercorn buffers (as core's HTTPS server)."""
LISTEN_BACKLOG = 128
"""Connections the kernel queues before accept (as core's HTTPS server)."""
TLS13 = 0x0304


class _Reader:
    """The plaintext side of a :class:`TlsStream` as hypercorn reads a StreamReader."""

    def __init__(self, stream: TlsStream) -> None:
        self._stream = stream
        self._done = False

    def at_eof(self) -> bool:
        return self._done

    async def read(self, size: int = READ_CHUNK) -> bytes:
        try:
            data = await self._stream.recv(size)
        except TransportError:
            self._done = True
            raise ConnectionResetError("TLS record refused") from None
        if not data:
            self._done = True
        return data


class _Writer:
    """The plaintext side of a :class:`TlsStream` as hypercorn writes a StreamWriter."""

    def __init__(self, stream: TlsStream) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        try:
            self._stream.send(data)
        except TransportError:
            raise ConnectionResetError("the TLS connection is closed") from None

    async def drain(self) -> None:
        await self._stream.drain()

    def write_eof(self) -> None:
        raise NotImplementedError("TLS has close_notify, sent on close")

    def close(self) -> None:
        self._stream.close()

    async def wait_closed(self) -> None:
        await self._stream.wait_closed()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._stream.get_extra_info(name, default)


class _WithTls:
    """The app, with the connection's TLS extension in each HTTP scope."""

    def __init__(self, app: Callable[..., Awaitable[None]], tls: dict[str, Any]) -> None:
        self._app = app
        self._tls = tls

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "extensions": {**scope.get("extensions", {}), "tls": self._tls}}
        await self._app(scope, receive, send)


class PqHttpListener:
    """A running HTTPS server on pyOpenSSL: its ``url`` and ``close()``."""

    def __init__(self, url: str, server: asyncio.Server, context: WorkerContext) -> None:
        self.url = url
        self._server = server
        self._context = context
        self._tasks: set[asyncio.Task[None]] = set()
        self._streams: set[TlsStream] = set()
        self._closed = False

    def track(self, task: asyncio.Task[None], stream: TlsStream) -> None:
        self._tasks.add(task)
        self._streams.add(stream)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            self._streams.discard(stream)

        task.add_done_callback(done)

    async def close(self) -> None:
        """Stop accepting, let connections finish for CLOSE_GRACE, then close the rest."""
        if self._closed:
            return
        self._closed = True
        self._server.close()
        await self._context.terminated.set()
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=CLOSE_GRACE)
            for stream in list(self._streams):
                stream.close()
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), CLOSE_GRACE)

    async def __aenter__(self) -> PqHttpListener:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


async def serve_pq_http(
    app: Callable[..., Awaitable[None]],
    url: str,
    context: Callable[[], SSL.Context],
    *,
    mode: PostQuantum,
) -> PqHttpListener:
    """Serve ``app`` at an ``https://`` URL (port 0: a free one) on pyOpenSSL; ``context``
    gives the current server context (enrolment adds trust anchors to it)."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise ConfigurationError(f"serve_pq_http needs an https:// URL: {url}")
    host = parts.hostname or "127.0.0.1"
    sock = _bind(host, parts.port or 0)
    config = Config()
    config.graceful_timeout = CLOSE_GRACE
    config.accesslog = None
    config.errorlog = log
    config.h11_max_incomplete_size = MAX_INCOMPLETE_REQUEST
    worker = WorkerContext(None)
    loop = asyncio.get_running_loop()
    listener: PqHttpListener

    async def run(stream: TlsStream) -> None:
        peer = stream.get_extra_info("peername")
        try:
            ssl_object = await stream.handshake()
            check_group(ssl_object.info, mode, peer_offers_hybrid=False)
        except (TransportError, TlsDowngradeError) as exc:
            log.debug("TLS from %s refused: %s", peer, exc)
            stream.close()
            return
        log.debug("TLS from %s: %s", peer, ssl_object.info.describe())
        tls = tls_extension(
            ssl_object.getpeercert(binary_form=True), TLS13, ssl_object.selected_alpn_protocol()
        )
        tls[SESSION_KEY] = ssl_object.info
        wrapped = wrap_app(cast(Any, _WithTls(app, tls)), config.wsgi_max_body_size, "asgi")
        reader, writer = _Reader(stream), _Writer(stream)
        # A peer closing uncleanly ends only its own connection; it is no server error.
        with contextlib.suppress(OSError, TransportError):
            await TCPServer(wrapped, loop, config, worker, {}, cast(Any, reader), cast(Any, writer))

    def accept() -> TlsStream:
        connection = SSL.Connection(context(), None)
        connection.set_accept_state()

        def opened(stream: TlsStream) -> None:
            listener.track(loop.create_task(run(stream)), stream)

        return TlsStream(connection, opened)

    server = await loop.create_server(accept, sock=sock)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    listener = PqHttpListener(f"https://{shown}:{bound[1]}{parts.path or ''}", server, worker)
    return listener
