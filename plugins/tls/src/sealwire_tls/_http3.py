"""HTTP/3 (RFC 9114) for the TLS binding: the same A2A app, on aioquic, with the same callers.

:func:`serve_http3` listens on UDP and serves an ASGI app (the binding's
:class:`~sealwire.transport.http.A2AHttpApp`) over HTTP/3, ALPN ``h3``.

Who may call (module rules; the TCP path's, without OpenSSL):

1. QUIC is TLS 1.3 only (RFC 9001 §4.2). Each connection requests a client
   certificate (``_quic.request_client_certificate``); aioquic checks the
   client's CertificateVerify, so the client holds the certificate's key.
2. When the handshake completes, before any stream is read, ``admit(leaf DER
   or None)`` decides: a leaf must be a trust anchor (``TlsServer.admits``); no
   certificate is admitted only when enrolment is on. A refused connection is
   closed with the TLS alert as QUIC error (RFC 9001 §4.8: 0x0100 + alert):
   ``certificate_required`` (116) or ``bad_certificate`` (42).
3. Every request's ASGI scope carries ``http_version`` ``"3"`` and the ``tls``
   extension (``client_cert_chain`` in PEM, ``tls_version`` 0x0304,
   ``alpn_protocol`` ``"h3"``), so the app identifies callers and signs the
   channel binding ("HTTP/3") exactly as over TCP.

Request bodies are streamed to the app and bounded by ``max_body``; responses
are streamed (Server-Sent Events). Requests in flight per connection are
bounded by aioquic's stream limit (128 bidirectional streams, RFC 9000 §4.6).
:class:`AltSvc` advertises the UDP port on the TCP responses
(``Alt-Svc: h3=":port"``, RFC 9114 §3.1.1, RFC 7838).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol, QuicStreamHandler
from aioquic.asyncio.server import QuicServer, serve
from aioquic.h3.connection import ErrorCode, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)
from aioquic.quic.packet import QuicErrorCode
from aioquic.tls import AlertDescription
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from sealwire.errors import ConfigurationError
from sealwire.transport import Listener
from sealwire.transport.http import (
    CLOSE_GRACE,
    MAX_HTTP_BODY,
    MAX_HTTP_HEADERS,
    request_scope,
    tls_extension,
)
from sealwire_tls._quic import (
    check_private_api,
    peer_certificate_der,
    quic_configuration,
    request_client_certificate,
)

__all__ = [
    "CERTIFICATE_REQUIRED",
    "BAD_CERTIFICATE",
    "AltSvc",
    "DualListener",
    "Http3Listener",
    "alt_svc",
    "serve_http3",
]

log = logging.getLogger(__name__)

CERTIFICATE_REQUIRED = QuicErrorCode.CRYPTO_ERROR + AlertDescription.certificate_required
"""QUIC error closing a connection that brought no certificate (enrolment off)."""
BAD_CERTIFICATE = QuicErrorCode.CRYPTO_ERROR + AlertDescription.bad_certificate
"""QUIC error closing a connection whose certificate is not a trust anchor."""

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
Admit = Callable[[bytes | None], bool]


def alt_svc(port: int) -> str:
    """``h3=":<port>"``: HTTP/3 on the same host, this UDP port (RFC 7838 §3)."""
    return f'h3=":{port}"'


class AltSvc:
    """ASGI middleware adding ``Alt-Svc`` to the responses of the TCP (HTTP/1.1, HTTP/2) path."""

    def __init__(self, app: App) -> None:
        self._app = app
        self.value: str | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        value = self.value
        if value is None or scope["type"] != "http" or scope.get("http_version") == "3":
            await self._app(scope, receive, send)
            return
        header = (b"alt-svc", value.encode("ascii"))

        async def send_with_alt_svc(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await self._app(scope, receive, send_with_alt_svc)


class _RequestStream:
    """One request stream: ASGI ``receive``/``send`` over the H3 connection."""

    def __init__(self, protocol: _ServerProtocol, stream_id: int, max_body: int) -> None:
        self._protocol = protocol
        self.stream_id = stream_id
        self._max_body = max_body
        # Bounded in bytes, not items: at most max_body + one chunk is buffered.
        self._messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._received = 0
        self._body_done = False
        self.client_ended = False
        self._started = False
        self.ended = False

    def feed(self, data: bytes, ended: bool) -> None:
        """Body bytes; past ``max_body`` the rest is dropped (the app answers 413)."""
        self.client_ended = self.client_ended or ended
        if self._body_done:
            return
        self._received += len(data)
        overflow = self._received > self._max_body
        self._body_done = ended or overflow
        more = not self._body_done
        self._messages.put_nowait({"type": "http.request", "body": data, "more_body": more})

    def disconnect(self) -> None:
        self._body_done = self.client_ended = True
        self.ended = True
        self._messages.put_nowait({"type": "http.disconnect"})

    async def receive(self) -> dict[str, Any]:
        return await self._messages.get()

    async def send(self, message: dict[str, Any]) -> None:
        if self.ended:
            return  # the client is gone (as over TCP: no error for the app)
        if message["type"] == "http.response.start":
            headers = [(b":status", str(message["status"]).encode())]
            headers += [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", [])]
            self._started = True
            self._protocol.send_headers(self, headers)
        elif message["type"] == "http.response.body":
            more = bool(message.get("more_body", False))
            body = bytes(message.get("body", b""))
            if body or not more:
                self._protocol.send_data(self, body, end=not more)

    async def run(self, app: App, scope: dict[str, Any]) -> None:
        """Run the app for this request; end the stream however the app ends."""
        failed = False
        try:
            await app(scope, self.receive, self.send)
        except Exception:
            log.exception("HTTP/3 request failed")
            failed = True
        finally:
            self._protocol.finished(self)
        if self.ended:
            return
        if not self._started:
            await self.send({"type": "http.response.start", "status": 500, "headers": []})
        elif failed:  # a half-sent answer must not look complete (RFC 9114 §4.1.1)
            self._protocol.reset(self, ErrorCode.H3_INTERNAL_ERROR)
            return
        self._protocol.send_data(self, b"", end=True)


class _ServerProtocol(QuicConnectionProtocol):
    """One QUIC connection: admission after the handshake, then HTTP/3 requests (rules 1-3)."""

    def __init__(
        self,
        quic: QuicConnection,
        stream_handler: QuicStreamHandler | None = None,
        *,
        listener: Http3Listener,
    ) -> None:
        super().__init__(quic, stream_handler)
        request_client_certificate(quic)  # before the first datagram creates the TLS context
        self._listener = listener
        self._h3: H3Connection | None = None
        self._tls: dict[str, Any] = {}
        self._client: tuple[str, int] | None = None
        self._streams: dict[int, _RequestStream] = {}

    @property
    def quic(self) -> QuicConnection:
        return self._quic

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        if self._client is None:
            self._client = (str(addr[0]), int(addr[1]))
        super().datagram_received(data, addr)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            self._admit(event)
        elif isinstance(event, ConnectionTerminated):
            for stream in list(self._streams.values()):
                stream.disconnect()
            self._listener.connections.discard(self)
        elif self._h3 is None:
            if isinstance(event, StreamDataReceived):  # no request before admission
                self.close(error_code=QuicErrorCode.PROTOCOL_VIOLATION)
        else:
            if isinstance(event, StreamReset) and event.stream_id in self._streams:
                self._streams[event.stream_id].disconnect()
            for h3_event in self._h3.handle_event(event):
                self._h3_event(h3_event)

    def _admit(self, event: HandshakeCompleted) -> None:
        der = peer_certificate_der(self._quic)
        if event.alpn_protocol != "h3" or not self._listener.admit(der):
            code = CERTIFICATE_REQUIRED if der is None else BAD_CERTIFICATE
            log.info("HTTP/3: refused a client from %s (%s)", self._client, hex(code))
            self.close(error_code=code, reason_phrase="client certificate not admitted")
            return
        if self._listener.closed:
            self.close(error_code=QuicErrorCode.CONNECTION_REFUSED)
            return
        self._tls = tls_extension(der, 0x0304, "h3")  # QUIC is TLS 1.3 only (RFC 9001 §4.2)
        self._h3 = H3Connection(self._quic)
        self._listener.connections.add(self)

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            stream = self._streams.get(event.stream_id)
            # aioquic lets pseudo-headers only into a stream's first HEADERS (RFC 9114
            # §4.3): anything else is trailers, which never start a request.
            if stream is None and any(name == b":method" for name, _ in event.headers):
                stream = self._start(event)
            if event.stream_ended and stream is not None:
                stream.feed(b"", ended=True)  # no body, or trailers (ignored) end it
        elif isinstance(event, DataReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.feed(event.data, event.stream_ended)

    def _start(self, event: HeadersReceived) -> _RequestStream | None:
        base = {
            "scheme": "https",
            "client": self._client,
            "server": self._listener.address,
            "extensions": {"tls": self._tls},
        }
        # aioquic already checked the pseudo-headers (RFC 9114 §4.3.1)
        scope = request_scope(event.headers[: MAX_HTTP_HEADERS + 8], base, "3")
        stream = _RequestStream(self, event.stream_id, self._listener.max_body)
        if scope is None:
            self._reject(event.stream_id)
            return None
        self._streams[event.stream_id] = stream
        self._listener.spawn(stream.run(self._listener.app, scope))
        return stream

    def _reject(self, stream_id: int) -> None:
        """A malformed request: 400 and the stream ends (RFC 9114 §4.1.2)."""
        assert self._h3 is not None
        with contextlib.suppress(Exception):
            self._h3.send_headers(stream_id, [(b":status", b"400")], end_stream=True)
            self.transmit()

    def send_headers(self, stream: _RequestStream, headers: list[tuple[bytes, bytes]]) -> None:
        self._send(stream, lambda h3: h3.send_headers(stream.stream_id, headers))

    def send_data(self, stream: _RequestStream, data: bytes, *, end: bool) -> None:
        self._send(stream, lambda h3: h3.send_data(stream.stream_id, data, end))
        if end:
            stream.ended = True

    def _send(self, stream: _RequestStream, action: Callable[[H3Connection], None]) -> None:
        if self._h3 is None or stream.ended:
            return
        try:
            action(self._h3)
        except Exception:  # the stream was reset or the connection closed under us
            stream.disconnect()
            return
        self.transmit()

    def reset(self, stream: _RequestStream, code: int) -> None:
        stream.ended = True
        with contextlib.suppress(Exception):
            self._quic.reset_stream(stream.stream_id, code)
            self.transmit()

    def finished(self, stream: _RequestStream) -> None:
        """The app is done with ``stream``; a body it did not read is declined (RFC 9114 §4.1)."""
        self._streams.pop(stream.stream_id, None)
        if not stream.client_ended:
            with contextlib.suppress(Exception):
                self._quic.stop_stream(stream.stream_id, ErrorCode.H3_NO_ERROR)
                self.transmit()


class Http3Listener:
    """The UDP side of a TLS listener: its address, its connections, ``close()``."""

    def __init__(self, app: App, admit: Admit, address: tuple[str, int], max_body: int) -> None:
        self.app = app
        self.admit = admit
        self.address = address
        self.max_body = max_body
        self.connections: set[_ServerProtocol] = set()
        self._server: QuicServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    def spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Close every connection, give requests :data:`CLOSE_GRACE`, cancel the rest."""
        if self.closed:
            return
        self.closed = True  # connections completing their handshake now are refused
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=CLOSE_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            self._server.close()


class DualListener:
    """A TLS listener serving TCP (HTTP/1.1, HTTP/2) and UDP (HTTP/3) at one URL."""

    def __init__(self, tcp: Listener, udp: Http3Listener) -> None:
        self.url = tcp.url
        self.tcp = tcp
        self.udp = udp

    async def close(self) -> None:
        """Close both sides (each lets its requests finish for :data:`CLOSE_GRACE`)."""
        await asyncio.gather(self.tcp.close(), self.udp.close())

    async def __aenter__(self) -> DualListener:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve_http3(
    app: App,
    host: str,
    port: int,
    *,
    chain: Sequence[x509.Certificate],
    key: ed25519.Ed25519PrivateKey,
    admit: Admit,
    max_body: int = MAX_HTTP_BODY,
) -> Http3Listener:
    """Serve ``app`` over HTTP/3 on UDP ``host:port`` (module rules 1-3)."""
    check_private_api()
    listener = Http3Listener(app, admit, (host, port), max_body)
    configuration = quic_configuration(chain, key, is_client=False)
    try:
        listener._server = await serve(
            host,
            port,
            configuration=configuration,
            create_protocol=functools.partial(_ServerProtocol, listener=listener),
            # Address validation (RFC 9000 §8.1): a spoofed Initial gets a Retry, not state.
            retry=True,
        )
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on UDP {host}:{port}: {exc.strerror}") from None
    return listener
