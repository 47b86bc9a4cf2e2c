"""Frame streams over real loopback WebSockets (one binary message per frame)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tls_certs import make_certificate
from websockets.asyncio.client import connect as raw_connect

from sealwire.errors import DecodeError
from sealwire.transport import (
    FrameStream,
    FrameTooLargeError,
    Listener,
    TransportClosed,
    TransportError,
    connect,
    serve,
)


async def echo(stream: FrameStream) -> None:
    while True:
        try:
            frame = await stream.receive()
        except TransportClosed:
            return
        await stream.send(frame)


@pytest.fixture
async def echo_server() -> AsyncIterator[Listener]:
    async with await serve("ws://127.0.0.1:0", echo) as listener:
        yield listener


async def test_round_trip_large_frames_and_addresses(echo_server: Listener) -> None:
    assert echo_server.url.startswith("ws://127.0.0.1:") and echo_server.url.endswith("/")
    stream = await connect(echo_server.url)
    assert echo_server.url.startswith(stream.peer_address)
    big = bytes(range(256)) * 16384  # 4 MiB
    for frame in (b"", b"hello", big):
        await stream.send(frame)
        assert await stream.receive() == frame
    await stream.close()
    await stream.close()
    with pytest.raises(TransportClosed):
        await stream.send(b"x")


async def test_limits_on_both_sides(echo_server: Listener) -> None:
    small = await connect(echo_server.url, max_frame_size=10)
    with pytest.raises(FrameTooLargeError):
        await small.send(b"x" * 11)
    await small.send(b"x" * 10)
    assert await small.receive() == b"x" * 10
    await small.close()

    outcome: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def handler(stream: FrameStream) -> None:
        try:
            await stream.receive()
        except Exception as exc:
            outcome.set_result(exc)

    async with await serve("ws://127.0.0.1:0", handler, max_frame_size=1000) as listener:
        stream = await connect(listener.url)
        await stream.send(b"x" * 1001)
        assert isinstance(await asyncio.wait_for(outcome, 5), FrameTooLargeError)
        with pytest.raises(TransportClosed):
            await asyncio.wait_for(stream.receive(), 5)
        await stream.close()


async def test_text_message_is_a_decode_error() -> None:
    outcome: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def handler(stream: FrameStream) -> None:
        try:
            await stream.receive()
        except Exception as exc:
            outcome.set_result(exc)

    async with (
        await serve("ws://127.0.0.1:0", handler) as listener,
        raw_connect(listener.url) as ws,
    ):
        await ws.send("text, not binary")
        error = await asyncio.wait_for(outcome, 5)
    assert isinstance(error, DecodeError) and not isinstance(error, FrameTooLargeError)


async def test_peer_close_and_listener_close() -> None:
    outcome: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def handler(stream: FrameStream) -> None:
        try:
            await stream.receive()
        except Exception as exc:
            outcome.set_result(exc)

    listener = await serve("ws://127.0.0.1:0", handler)
    first = await connect(listener.url)
    await first.close()
    assert isinstance(await asyncio.wait_for(outcome, 5), TransportClosed)
    second = await connect(listener.url)
    await listener.close()
    with pytest.raises(TransportClosed):
        await asyncio.wait_for(second.receive(), 5)
    await second.close()


async def test_many_concurrent_connections(echo_server: Listener) -> None:
    async def client(i: int) -> None:
        stream = await connect(echo_server.url)
        try:
            for j in range(3):
                frame = f"{i}:{j}".encode()
                await stream.send(frame)
                assert await stream.receive() == frame
        finally:
            await stream.close()

    await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(50))), 30)


async def test_connect_failure_is_a_transport_error() -> None:
    async with await serve("tcp://127.0.0.1:0", echo) as tcp:  # not a WebSocket server
        url = tcp.url.replace("tcp://", "ws://")
        with pytest.raises(TransportError):
            await connect(url, timeout=2)


def self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed certificate for 127.0.0.1, and a
    client context that trusts exactly that certificate."""
    cert_file, key_file = make_certificate(tmp_path, "websocket")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_wss_round_trip(tmp_path: Path) -> None:
    server_ctx, client_ctx = self_signed(tmp_path)
    async with await serve("wss://127.0.0.1:0", echo, ssl=server_ctx) as listener:
        assert listener.url.startswith("wss://127.0.0.1:")
        stream = await connect(listener.url, ssl=client_ctx)
        assert stream.peer_address.startswith("wss://")
        await stream.send(b"over tls")
        assert await stream.receive() == b"over tls"
        await stream.close()
        with pytest.raises(TransportError):  # the default trust store rejects it
            await connect(listener.url, timeout=5)
