"""Core's HTTPS listener with a pluggable TLS layer (``serve_http(..., tls_layer=...)``),
the public parameter sealwire-tls's post-quantum server supplies instead of keeping a
copy of the listener.

The layer here is real TLS: Python's ``ssl`` over memory BIOs, mutual certificates,
ALPN, so HTTP/1.1 and HTTP/2 both run over it with httpx as the client."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from tls_certs import make_certificate
from waiting import until

from sealwire.errors import ConfigurationError
from sealwire.transport.http import TlsConnection, serve_http, tls_extension

ROOT = Path(__file__).parents[2]
MARK = "test-layer"


class _BioConnection(asyncio.Protocol):
    """One server connection: Python's ssl on memory BIOs, driven by asyncio."""

    def __init__(self, context: ssl.SSLContext, on_open: Callable[[TlsConnection], None]) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._on_open = on_open
        self._transport: asyncio.Transport | None = None
        self._arrived = asyncio.Event()
        self._eof = False
        self._lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._on_open(self)

    def data_received(self, data: bytes) -> None:
        self._incoming.write(data)
        self._arrived.set()

    def eof_received(self) -> bool:
        self._eof = True
        self._arrived.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._arrived.set()
        if not self._lost.done():
            self._lost.set_result(None)

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    async def secure(self) -> Mapping[str, Any] | None:
        while True:
            self._arrived.clear()
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if self._eof:
                    self.close()
                    return None
                await self._arrived.wait()
            except ssl.SSLError:
                self._flush()
                self.close()
                return None
        self._flush()
        der = self._tls.getpeercert(binary_form=True)
        extension = tls_extension(der, 0x0304, self._tls.selected_alpn_protocol())
        return {**extension, MARK: True}

    async def read(self, size: int) -> bytes:
        while True:
            self._arrived.clear()
            try:
                data = self._tls.read(size)
            except ssl.SSLWantReadError:
                self._flush()
                if self._eof:
                    return b""
                await self._arrived.wait()
                continue
            except ssl.SSLZeroReturnError:
                return b""
            except ssl.SSLError:
                raise ConnectionResetError("TLS record refused") from None
            self._flush()
            return data

    def write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("closed")
        self._tls.write(data)
        self._flush()

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def wait_closed(self) -> None:
        await self._lost

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._tls
        if self._transport is None:
            return default
        return self._transport.get_extra_info(name, default)


class _BioLayer:
    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self.accepted = 0

    def accept(self, on_open: Callable[[TlsConnection], None]) -> asyncio.BaseProtocol:
        self.accepted += 1
        return _BioConnection(self._context, on_open)


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    tls = scope.get("extensions", {}).get("tls", {})
    body = (
        f"{scope['http_version']} {len(tls.get('client_cert_chain', []))} "
        f"{tls.get(MARK)} {tls.get('alpn_protocol')}"
    ).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server_cert, server_key = make_certificate(tmp_path, "server")
    client_cert, client_key = make_certificate(tmp_path, "client")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(server_cert, server_key)
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_verify_locations(client_cert)
    server.set_alpn_protocols(["h2", "http/1.1"])
    client = ssl.create_default_context(cafile=str(server_cert))
    client.load_cert_chain(client_cert, client_key)
    return server, client


@pytest.mark.parametrize("http2", [False, True])
async def test_a_tls_layer_serves_http_with_its_extension_in_the_scope(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], http2: bool
) -> None:
    server_context, client_context = contexts
    layer = _BioLayer(server_context)
    listener = await serve_http(_app, "https://127.0.0.1:0/", tls_layer=layer)
    try:
        async with httpx.AsyncClient(verify=client_context, http2=http2) as client:
            first = await client.get(listener.url)
            second = await client.get(listener.url)  # the same connection, kept alive
        expected = "2 1 True h2" if http2 else "1.1 1 True http/1.1"
        assert (first.status_code, first.text) == (200, expected)
        assert second.text == expected
        assert layer.accepted == 1
    finally:
        await listener.close()


async def test_closing_the_listener_closes_a_layers_open_connections(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_context, client_context = contexts
    listener = await serve_http(_app, "https://127.0.0.1:0/", tls_layer=_BioLayer(server_context))
    client = httpx.AsyncClient(verify=client_context)
    try:
        assert (await client.get(listener.url)).status_code == 200
        assert listener._connections  # kept alive by the client
        await listener.close()
        await until(lambda: not listener._connections, "the open connection closed")
    finally:
        await client.aclose()
        await listener.close()


async def test_a_refused_handshake_ends_only_that_connection(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_context, client_context = contexts
    listener = await serve_http(_app, "https://127.0.0.1:0/", tls_layer=_BioLayer(server_context))
    stranger = ssl.create_default_context()  # trusts not the server, sends no certificate
    try:
        async with httpx.AsyncClient(verify=stranger) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(listener.url)
        async with httpx.AsyncClient(verify=client_context) as client:
            assert (await client.get(listener.url)).status_code == 200
        await until(lambda: not listener._connections, "both connections ended")
    finally:
        await listener.close()


async def test_ssl_and_a_tls_layer_together_are_refused(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_context, _client = contexts
    layer = _BioLayer(server_context)
    with pytest.raises(ConfigurationError):
        await serve_http(_app, "https://127.0.0.1:0/", ssl=server_context, tls_layer=layer)
    with pytest.raises(ConfigurationError):
        await serve_http(_app, "http://127.0.0.1:0/", tls_layer=layer)
