"""Calling A2A over TLS 1.3 with X25519MLKEM768: httpx over pyOpenSSL connections.

httpx asks httpcore for connections, and httpcore asks a *network backend* for
a TCP stream and then for TLS on it (``start_tls``), reading ALPN from the
stream's ``ssl_object``. :class:`PqNetworkBackend` is such a backend whose
streams are :class:`~sealwire_tls._pq_stream.TlsStream` s: the TLS is pyOpenSSL on
cryptography's OpenSSL (the ``ssl.SSLContext`` httpcore passes is not used),
so HTTP/1.1 and HTTP/2 (ALPN ``h2``) run over the hybrid key exchange with
httpcore's own connection pool. :class:`PqTransport` is the httpx transport
over that pool. Each handshake's session goes to ``on_session``, which
applies the downgrade rule (:func:`~sealwire_tls._pq_session.check_group`) before
any request is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import httpcore
import httpx
from OpenSSL import SSL

from sealwire.transport import TransportError, connect_first, resolve
from sealwire_tls._pq_session import TlsSessionInfo
from sealwire_tls._pq_stream import TlsStream

__all__ = ["PqNetworkBackend", "PqTransport", "connect_tls"]

_HTTPCORE_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)
"""httpcore's errors as httpx's (most specific first), as httpx's own transport maps them."""


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except httpcore.TimeoutException as exc:
        raise _mapped(exc) from exc
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        raise _mapped(exc) from exc


def _mapped(exc: Exception) -> httpx.HTTPError:
    for source, target in _HTTPCORE_ERRORS:
        if isinstance(exc, source):
            return target(str(exc))
    return httpx.TransportError(str(exc))  # pragma: no cover - the table covers httpcore's


async def connect_tls(
    host: str, port: int, context: SSL.Context, timeout: float | None
) -> TlsStream:
    """A TCP connection to ``host:port`` and a TLS handshake on it (client side)."""
    loop = asyncio.get_running_loop()
    connection = SSL.Connection(context, None)
    connection.set_connect_state()
    try:
        async with asyncio.timeout(timeout):
            addresses = await resolve(host, port, timeout=timeout)
            _transport, stream = await connect_first(
                addresses,
                lambda a, p, f: loop.create_connection(
                    lambda: TlsStream(connection), a, p, family=f
                ),
            )
    except TimeoutError:
        raise TransportError(f"cannot reach {host}:{port}: timeout") from None
    except OSError as exc:
        raise TransportError(f"cannot reach {host}:{port}: {type(exc).__name__}") from None
    try:
        await stream.handshake(timeout)
    except BaseException:
        stream.close()
        raise
    return stream


class _Stream(httpcore.AsyncNetworkStream):
    """A TCP connection as httpcore sees it; TLS begins at :meth:`start_tls`."""

    def __init__(self, backend: PqNetworkBackend, host: str, port: int) -> None:
        self._backend = backend
        self._host = host
        self._port = port
        self._tls: TlsStream | None = None

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            self._tls = await connect_tls(self._host, self._port, self._backend.context, timeout)
        except TransportError as exc:
            raise httpcore.ConnectError(str(exc)) from None
        assert self._tls.ssl_object is not None
        try:
            self._backend.on_session(self._tls.ssl_object.info)  # may refuse (downgrade)
        except BaseException:
            self._tls.close()
            raise
        return self

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        tls = self._require()
        try:
            async with asyncio.timeout(timeout):
                return await tls.recv(max_bytes)
        except TimeoutError:
            raise httpcore.ReadTimeout("read timed out") from None
        except TransportError as exc:
            raise httpcore.ReadError(str(exc)) from None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        tls = self._require()
        try:
            tls.send(buffer)
            async with asyncio.timeout(timeout):
                await tls.drain()
        except TimeoutError:
            raise httpcore.WriteTimeout("write timed out") from None
        except TransportError as exc:
            raise httpcore.WriteError(str(exc)) from None

    async def aclose(self) -> None:
        if self._tls is not None:
            self._tls.close()
            await self._tls.wait_closed()

    def get_extra_info(self, info: str) -> Any:
        if self._tls is None:
            return None
        if info == "is_readable":
            return self._tls.readable()
        if info == "client_addr":
            return self._tls.get_extra_info("sockname")
        if info == "server_addr":
            return self._tls.get_extra_info("peername")
        return self._tls.get_extra_info(info)

    def _require(self) -> TlsStream:
        if self._tls is None:
            raise httpcore.ReadError("plain HTTP is not offered by this backend")
        return self._tls


class PqNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's connections over pyOpenSSL: ``context`` for every handshake,
    ``on_session`` told (and allowed to refuse) each one."""

    def __init__(self, context: SSL.Context, on_session: Callable[[TlsSessionInfo], None]) -> None:
        self.context = context
        self.on_session = on_session

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # The TCP connection is made with the handshake, in start_tls (httpcore always
        # asks for TLS on an https:// origin, the only kind this backend serves).
        return _Stream(self, host, port)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("no Unix sockets over this backend")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            await self._stream.aclose()


class PqTransport(httpx.AsyncBaseTransport):
    """An httpx transport: httpcore's pool (HTTP/1.1, and HTTP/2 when ``http2`` and the
    server agrees by ALPN) over :class:`PqNetworkBackend`."""

    def __init__(self, backend: PqNetworkBackend, *, http2: bool) -> None:
        # httpcore sets ALPN on this context and passes it to start_tls, which does not
        # use it: the pyOpenSSL context of the backend carries the real settings.
        unused = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        limits = httpx.Limits()  # httpx's defaults, as on Python's ssl: idle connections
        # expire after 5 s, before a server's keep-alive timeout closes them under a request
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=unused,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=http2,
            network_backend=backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
