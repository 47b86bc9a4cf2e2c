"""Serving A2A over TLS 1.3 with X25519MLKEM768: core's HTTPS listener on pyOpenSSL.

Python's ``ssl`` has no ML-KEM group, so core's listener
(:func:`sealwire.transport.http.serve_http`) is given a TLS layer of ours
(:class:`PqTlsLayer`, core's public :class:`~sealwire.transport.http.TlsLayer`):
each accepted connection is a :class:`~sealwire_tls._pq_stream.TlsStream` (the
handshake runs first, bounded by :data:`~sealwire_tls._pq_stream.HANDSHAKE_TIMEOUT`),
and core serves HTTP/1.1 and HTTP/2 (ALPN ``h2``) on its plaintext exactly as on
Python's ``ssl``, with the same sockets, bounds and close sequence.

Each connection's session (version, suite, group, ALPN) is logged at debug
and put in the ASGI ``tls`` extension beside the client certificate, under
``sealwire_session`` (a :class:`~sealwire_tls._pq_session.TlsSessionInfo`), where
:meth:`TlsServer.identify <sealwire_tls._server.TlsServer.identify>` applies the
downgrade rule to Sealwire callers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from OpenSSL import SSL

from sealwire.transport import TransportError
from sealwire.transport.http import (
    HttpListener,
    TlsConnection,
    serve_http,
    tls_extension,
)
from sealwire_tls._pq import PostQuantum, TlsDowngradeError
from sealwire_tls._pq_session import check_group
from sealwire_tls._pq_stream import TlsStream
from sealwire_tls._server import SESSION_KEY

__all__ = ["PqTlsLayer", "serve_pq_http"]

log = logging.getLogger(__name__)

TLS13 = 0x0304
"""The ASGI TLS extension's ``tls_version`` of TLS 1.3, the only version served here."""


class _PqConnection(TlsStream):
    """A server-side :class:`TlsStream` as core's listener drives a
    :class:`~sealwire.transport.http.TlsConnection`: our record errors become the
    ``OSError`` it ends a connection on."""

    def __init__(
        self,
        connection: SSL.Connection,
        on_open: Callable[[TlsConnection], None],
        mode: PostQuantum,
    ) -> None:
        super().__init__(connection, lambda _stream: on_open(self))
        self._mode = mode

    async def secure(self) -> Mapping[str, Any] | None:
        peer = self.get_extra_info("peername")
        try:
            ssl_object = await self.handshake()
            check_group(ssl_object.info, self._mode, peer_offers_hybrid=False)
        except (TransportError, TlsDowngradeError) as exc:
            log.debug("TLS from %s refused: %s", peer, exc)
            self.close()
            return None
        log.debug("TLS from %s: %s", peer, ssl_object.info.describe())
        tls = tls_extension(
            ssl_object.getpeercert(binary_form=True), TLS13, ssl_object.selected_alpn_protocol()
        )
        tls[SESSION_KEY] = ssl_object.info
        return tls

    async def read(self, size: int) -> bytes:
        try:
            return await self.recv(size)
        except TransportError:
            raise ConnectionResetError("TLS record refused") from None

    def write(self, data: bytes) -> None:
        try:
            self.send(data)
        except TransportError:
            raise ConnectionResetError("the TLS connection is closed") from None


class PqTlsLayer:
    """pyOpenSSL server connections for core's listener; ``context`` gives the current
    server context (enrolment adds trust anchors to it)."""

    def __init__(self, context: Callable[[], SSL.Context], mode: PostQuantum) -> None:
        self._context = context
        self._mode = mode

    def accept(self, on_open: Callable[[TlsConnection], None]) -> _PqConnection:
        connection = SSL.Connection(self._context(), None)
        connection.set_accept_state()
        return _PqConnection(connection, on_open, self._mode)


async def serve_pq_http(
    app: Callable[..., Awaitable[None]],
    url: str,
    context: Callable[[], SSL.Context],
    *,
    mode: PostQuantum,
) -> HttpListener:
    """Serve ``app`` at an ``https://`` URL (port 0: a free one) on pyOpenSSL."""
    return await serve_http(app, url, tls_layer=PqTlsLayer(context, mode))
