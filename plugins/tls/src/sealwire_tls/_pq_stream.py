"""The carrier of the ``post_quantum`` option: :class:`TlsStream`, an asyncio protocol
running one pyOpenSSL connection over memory BIOs (handshake, records, close_notify),
used by both the server (:mod:`._pq_server`) and the client (:mod:`._pq_client`)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL

from sealwire.errors import AuthenticationError, RemoteProtocolError
from sealwire_tls._pq import TlsHandshakeError, TlsRecordError
from sealwire_tls._pq_session import SslObject

__all__ = [
    "CLOSE_TIMEOUT",
    "HANDSHAKE_TIMEOUT",
    "HIGH_WATER",
    "READ_CHUNK",
    "WRITE_HIGH_WATER",
    "TlsStream",
    "peer_certificate_der",
]

HANDSHAKE_TIMEOUT = 10.0
"""Seconds a TLS handshake may take before the connection is dropped (as core's
HTTPS server allows Python's ``ssl``)."""
READ_CHUNK = 1 << 16
"""Bytes asked of OpenSSL per read: more than one record's plaintext (2^14)."""
HIGH_WATER = 1 << 18
"""Received bytes buffered in the read BIO before the socket stops being read
(resumed once OpenSSL drained them): a slow reader does not grow the buffer."""
CLOSE_TIMEOUT = 5.0
"""Seconds a closed connection may take to flush what it queued before it is aborted."""
WRITE_HIGH_WATER = 1 << 18
"""Bytes queued in the transport before ``drain`` waits (asyncio's default is 64 KiB)."""


class TlsStream(asyncio.Protocol):
    """One TLS connection over an asyncio transport: pyOpenSSL over memory BIOs.

    Received bytes go straight into OpenSSL's read BIO (bounded by
    :data:`HIGH_WATER`: the socket is paused beyond it); what OpenSSL writes is
    handed to the transport at once. Writing is synchronous (:meth:`send`),
    reading waits for records (:meth:`recv`). ``on_open`` is called with the
    stream once the TCP connection is made (a server starts its task there).
    """

    def __init__(
        self, connection: SSL.Connection, on_open: Callable[[TlsStream], None] | None = None
    ) -> None:
        self._connection = connection
        self._on_open = on_open
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._buffered = 0
        self._paused = False
        self._eof = False
        self._closing = False
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ssl_object: SslObject | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Headers and body are separate records: without this, Nagle's algorithm and
            # the peer's delayed ACK add ~40 ms to every answer.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        if self._on_open is not None:
            self._on_open(self)

    def data_received(self, data: bytes) -> None:
        self._connection.bio_write(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # nothing more can come: let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # driving OpenSSL

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _more(self) -> bool:
        """Wait for received bytes; False at end of stream. OpenSSL emptied its read BIO."""
        self._buffered = 0
        if self._paused and self.transport is not None and not self._closing:
            self.transport.resume_reading()
            self._paused = False
        if self._eof:
            return False
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        return True

    def _flush(self) -> None:
        while True:
            try:
                data = self._connection.bio_read(READ_CHUNK)
            except SSL.WantReadError:
                return
            if not data:
                return
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(data)

    async def handshake(self, timeout: float | None = HANDSHAKE_TIMEOUT) -> SslObject:
        """Run the handshake (either side, as the connection was set up); TlsHandshakeError.
        ``timeout`` None: the caller bounds it."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        self._connection.do_handshake()
                    except SSL.WantReadError:
                        self._flush()
                        if not await self._more():
                            raise TlsHandshakeError(
                                "the peer closed during the handshake"
                            ) from None
                        continue
                    except SSL.Error as exc:
                        self._flush()  # our alert, if OpenSSL wrote one
                        raise TlsHandshakeError(f"TLS handshake failed: {_reasons(exc)}") from None
                    self._flush()
                    break
        except TimeoutError:
            raise TlsHandshakeError(f"no TLS handshake within {timeout} s") from None
        self.ssl_object = SslObject(self._connection)
        return self.ssl_object

    async def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes of plaintext; ``b""`` at the end of the stream."""
        while True:
            try:
                data = self._connection.recv(size)
            except SSL.WantReadError:
                self._flush()  # e.g. a KeyUpdate answer
                if not await self._more():
                    return b""
                continue
            except SSL.ZeroReturnError:  # close_notify
                return b""
            except SSL.SysCallError:  # EOF without close_notify
                return b""
            except SSL.Error as exc:
                self._flush()
                raise TlsRecordError(f"TLS record refused: {_reasons(exc)}") from None
            self._flush()
            return bytes(data)

    def send(self, data: bytes) -> None:
        """Encrypt and queue ``data`` (a memory BIO takes it all at once).

        Once the peer closed, writes are dropped as a socket's kernel drops them: the
        reader learns of the close from :meth:`recv`, after what the peer sent last
        (an HTTP/2 GOAWAY, which makes httpcore retry on a new connection)."""
        if self._closing or self.transport is None:
            raise TlsRecordError("the TLS connection is closed")
        if self._eof or self.transport.is_closing():
            return
        try:
            self._connection.sendall(data)
        except SSL.Error as exc:
            raise TlsRecordError(f"TLS write refused: {_reasons(exc)}") from None
        self._flush()

    async def drain(self) -> None:
        if self._writable is not None and not self._writable.done():
            await self._writable

    def readable(self) -> bool:
        """Whether an idle connection has something to read (the peer closed, or sent
        what nobody asked for): httpcore then drops it rather than reuse it."""
        if self._eof:
            return True
        try:
            self._connection.recv(1, socket.MSG_PEEK)
        except SSL.WantReadError:
            return False
        except SSL.Error:
            return True
        return True

    def close(self) -> None:
        """Send close_notify and close the transport (idempotent)."""
        if self._closing:
            return
        self._closing = True
        if self.ssl_object is not None:
            with contextlib.suppress(SSL.Error):
                self._connection.shutdown()
            self._flush()
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        """Wait for the transport to close; abort it after :data:`CLOSE_TIMEOUT` (a peer
        that reads nothing would otherwise keep our unsent bytes, and us, waiting)."""
        if self.transport is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), CLOSE_TIMEOUT)
        except TimeoutError:
            self.transport.abort()
            await self._lost

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self.ssl_object
        if self.transport is None:
            return default
        return self.transport.get_extra_info(name, default)


def peer_certificate_der(stream: TlsStream) -> bytes:
    """The peer's leaf (DER), or RemoteProtocolError when it sent none."""
    if stream.ssl_object is None:
        raise AuthenticationError("no TLS handshake yet")
    der = stream.ssl_object.getpeercert(binary_form=True)
    if not der:
        raise RemoteProtocolError("the server sent no certificate")
    return der


def _reasons(exc: SSL.Error) -> str:
    """OpenSSL's reason strings (never key material)."""
    parts = [str(item[-1]) for item in (exc.args[0] if exc.args else []) if item]
    return "; ".join(p for p in parts if p) or type(exc).__name__
