"""An ``httpx`` transport speaking HTTP/3 (RFC 9114) over aioquic, to one pinned server.

:class:`Http3Transport` is what :class:`~sealwire_tls.TlsClient` gives its
``httpx.AsyncClient`` when both ends offer HTTP/3, and what an external client
(an a2a-sdk client over ``httpx``) may use: ``httpx.AsyncClient(transport=...)``.

Module rules:

1. One QUIC connection per transport (TLS 1.3, ALPN ``h3``, our certificate and
   key); requests are multiplexed on it, each on its own stream; a closed
   connection is replaced at the next request.
2. The server is authenticated by the EXACT leaf certificate it presented
   (``_quic.peer_certificate_der``; aioquic checked its CertificateVerify),
   compared with the pinned DER after the handshake and before any request
   is sent; a mismatch is a :class:`~sealwire.errors.TrustError`.
3. Response bodies are streamed (Server-Sent Events work); a response buffers
   at most :data:`MAX_BUFFERED` bytes its reader has not taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import ErrorCode, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted, QuicEvent, StreamReset
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from sealwire.errors import TrustError
from sealwire.transport import TransportError, resolve
from sealwire.transport.http import MAX_HTTP_BODY, MAX_HTTP_HEADERS
from sealwire_tls._quic import peer_certificate_der, quic_configuration

__all__ = ["MAX_BUFFERED", "Http3Transport"]

MAX_BUFFERED = MAX_HTTP_BODY + 64 * 1024
"""Response bytes received and not yet read, per response: aioquic grants flow-control
credit as data arrives, not as it is read, so a slow reader is bounded here."""
_SKIPPED_HEADERS = frozenset(
    {"host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)


class _Response:
    """What one request stream has received: headers, then body chunks, then the end."""

    def __init__(self) -> None:
        self.headers: asyncio.Future[list[tuple[bytes, bytes]]] = (
            asyncio.get_running_loop().create_future()
        )
        self.chunks: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self.buffered = 0

    def fail(self, error: BaseException) -> None:
        if not self.headers.done():
            self.headers.set_exception(error)
            self.headers.exception()  # retrieved: nobody may be waiting any more
        self.chunks.put_nowait(error)


class _ClientProtocol(QuicConnectionProtocol):
    def __init__(self, quic: QuicConnection, stream_handler: Any = None) -> None:
        super().__init__(quic, stream_handler)
        self.h3: H3Connection | None = None
        self.responses: dict[int, _Response] = {}
        self.terminated: str | None = None

    @property
    def quic(self) -> QuicConnection:
        return self._quic

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            self.h3 = H3Connection(self._quic)
        elif isinstance(event, ConnectionTerminated):
            self.terminated = f"{event.reason_phrase[:100]} (QUIC error {event.error_code:#x})"
            for response in self.responses.values():
                response.fail(httpx.ReadError(f"the HTTP/3 connection closed: {self.terminated}"))
            self.responses.clear()
        elif isinstance(event, StreamReset) and event.stream_id in self.responses:
            error = httpx.RemoteProtocolError(f"stream reset by the server ({event.error_code:#x})")
            self.responses.pop(event.stream_id).fail(error)
        if self.h3 is not None:
            for h3_event in self.h3.handle_event(event):
                self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        if not isinstance(event, HeadersReceived | DataReceived):
            return
        response = self.responses.get(event.stream_id)
        if response is None:
            return
        if isinstance(event, HeadersReceived):
            if not response.headers.done():
                response.headers.set_result(list(event.headers[:MAX_HTTP_HEADERS]))
        elif event.data:
            response.buffered += len(event.data)
            if response.buffered > MAX_BUFFERED:
                self.cancel(event.stream_id)
                response.fail(httpx.ReadError("the response reader is too slow"))
                return
            response.chunks.put_nowait(event.data)
        if event.stream_ended:
            if not response.headers.done():
                response.fail(httpx.RemoteProtocolError("the stream ended without headers"))
            response.chunks.put_nowait(None)
            self.responses.pop(event.stream_id, None)

    def cancel(self, stream_id: int) -> None:
        """Stop a request whose answer is no longer wanted (H3_REQUEST_CANCELLED)."""
        self.responses.pop(stream_id, None)
        with contextlib.suppress(Exception):
            self._quic.reset_stream(stream_id, ErrorCode.H3_REQUEST_CANCELLED)
            self._quic.stop_stream(stream_id, ErrorCode.H3_REQUEST_CANCELLED)
        self.transmit()


class _Body(httpx.AsyncByteStream):
    def __init__(self, protocol: _ClientProtocol, stream_id: int, response: _Response) -> None:
        self._protocol = protocol
        self._stream_id = stream_id
        self._response = response
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while not self._done:
            item = await self._response.chunks.get()
            if item is None:
                self._done = True
                return
            if isinstance(item, BaseException):
                self._done = True
                raise item
            self._response.buffered -= len(item)
            yield item

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            self._protocol.cancel(self._stream_id)


class Http3Transport(httpx.AsyncBaseTransport):
    """HTTP/3 to ``host:port`` with our certificate, the server pinned by its exact leaf DER."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        certificate_chain: Sequence[x509.Certificate],
        private_key: ed25519.Ed25519PrivateKey | None,
        server_certificate: bytes,
        connect_timeout: float = 30.0,
    ) -> None:
        self._host, self._port = host, port
        self._chain = tuple(certificate_chain)
        self._key = private_key
        self._pin = server_certificate
        self._timeout = connect_timeout
        self._protocol: _ClientProtocol | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._lock = asyncio.Lock()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on a new stream; the response's body streams as it arrives."""
        if request.url.host != self._host or (request.url.port or 443) != self._port:
            origin = f"{self._host}:{self._port}"
            raise httpx.UnsupportedProtocol(f"this HTTP/3 transport serves {origin} only")
        protocol = await self._connection(request)
        h3 = protocol.h3
        assert h3 is not None  # set on HandshakeCompleted, before _connection returns
        stream_id = protocol.quic.get_next_available_stream_id()
        response = _Response()
        protocol.responses[stream_id] = response
        try:
            h3.send_headers(stream_id, _request_headers(request))
            protocol.transmit()
            async for chunk in request.stream:  # type: ignore[union-attr]
                h3.send_data(stream_id, bytes(chunk), end_stream=False)
                protocol.transmit()
            h3.send_data(stream_id, b"", end_stream=True)
            protocol.transmit()
            headers = await response.headers
        except BaseException:
            protocol.cancel(stream_id)
            raise
        status, fields = _response_headers(headers)
        return httpx.Response(
            status,
            headers=fields,
            stream=_Body(protocol, stream_id, response),
            extensions={"http_version": b"HTTP/3"},
            request=request,
        )

    async def connect(self) -> None:
        """Open the QUIC connection now (handshake, pin check) rather than at the first request."""
        await self._connection(None)

    async def _connection(self, request: httpx.Request | None) -> _ClientProtocol:
        async with self._lock:
            protocol = self._protocol
            if protocol is not None and protocol.terminated is None:
                return protocol
            await self._drop()
            timeouts = {} if request is None else request.extensions.get("timeout", {})
            timeout = timeouts.get("connect", self._timeout)
            try:
                protocol = await asyncio.wait_for(self._connect(), timeout)
            except (OSError, TimeoutError, TransportError) as exc:
                await self._drop()
                raise httpx.ConnectError(
                    f"HTTP/3 connection to {self._host}:{self._port} failed: {type(exc).__name__}"
                ) from None
            try:
                check_pin(protocol.quic, self._pin)  # before any request is sent (rule 2)
            except TrustError:
                await self._drop()
                raise
            return protocol

    async def _connect(self) -> _ClientProtocol:
        loop = asyncio.get_running_loop()
        family, address = (await resolve(self._host, self._port, kind=socket.SOCK_DGRAM))[0]
        configuration = quic_configuration(
            self._chain, self._key, is_client=True, server_name=_server_name(self._host)
        )
        protocol = _ClientProtocol(QuicConnection(configuration=configuration))
        local = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
        transport, _ = await loop.create_datagram_endpoint(
            lambda: protocol, local_addr=local, family=family
        )
        self._transport, self._protocol = transport, protocol
        protocol.connect(address)
        await protocol.wait_connected()
        return protocol

    async def _drop(self) -> None:
        protocol, transport = self._protocol, self._transport
        self._protocol = self._transport = None
        if protocol is not None and protocol.terminated is None:
            protocol.close()
        if transport is not None:
            transport.close()

    async def aclose(self) -> None:
        """Close the QUIC connection (requests in flight fail)."""
        async with self._lock:
            await self._drop()


def check_pin(quic: QuicConnection, pinned: bytes) -> None:
    """Rule 2: the server's leaf must be exactly the pinned certificate (TrustError if not)."""
    presented = peer_certificate_der(quic)
    if presented is None or not hmac.compare_digest(presented, pinned):
        raise TrustError("the HTTP/3 server's certificate is not the pinned one")


def _server_name(host: str) -> str | None:
    """SNI carries DNS names only (RFC 6066 §3): none for an IP address."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None


def _request_headers(request: httpx.Request) -> list[tuple[bytes, bytes]]:
    url = request.url
    authority = url.netloc
    headers = [
        (b":method", request.method.encode("ascii")),
        (b":scheme", b"https"),
        (b":authority", authority),
        (b":path", url.raw_path),
    ]
    for name, value in request.headers.raw:
        if name.decode("latin-1").lower() not in _SKIPPED_HEADERS:
            headers.append((name.lower(), value))
    return headers


def _response_headers(headers: list[tuple[bytes, bytes]]) -> tuple[int, list[tuple[bytes, bytes]]]:
    status = b""
    fields = []
    for name, value in headers:
        if name == b":status":
            status = value
        elif not name.startswith(b":"):
            fields.append((name, value))
    if not status.isdigit() or len(status) != 3:
        raise httpx.RemoteProtocolError("the HTTP/3 answer has no valid :status")
    return int(status), fields
