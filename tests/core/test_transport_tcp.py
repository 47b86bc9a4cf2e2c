"""Frame streams over real loopback TCP sockets."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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

Handler = Callable[[FrameStream], Awaitable[None]]


async def echo(stream: FrameStream) -> None:
    while True:
        try:
            frame = await stream.receive()
        except TransportClosed:
            return
        await stream.send(frame)


@pytest.fixture
async def echo_server() -> AsyncIterator[Listener]:
    async with await serve("tcp://127.0.0.1:0", echo) as listener:
        yield listener


def recording_handler() -> tuple[Handler, asyncio.Future[BaseException | None]]:
    """A handler that reads once and records how that ended."""
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def handler(stream: FrameStream) -> None:
        try:
            await stream.receive()
            outcome.set_result(None)
        except Exception as exc:
            outcome.set_result(exc)

    return handler, outcome


async def test_round_trip_and_addresses(echo_server: Listener) -> None:
    assert echo_server.url.startswith("tcp://127.0.0.1:")
    stream = await connect(echo_server.url)
    assert stream.peer_address == echo_server.url
    for frame in (b"", b"hello", bytes(range(256)) * 10):
        await stream.send(frame)
        assert await stream.receive() == frame
    await stream.close()
    await stream.close()


async def test_large_frame(echo_server: Listener) -> None:
    stream = await connect(echo_server.url)
    big = bytes(range(256)) * (8 * 4096)  # 8 MiB
    await stream.send(big)
    assert await stream.receive() == big
    await stream.close()


async def test_send_above_the_limit_fails_before_writing(echo_server: Listener) -> None:
    stream = await connect(echo_server.url, max_frame_size=10)
    with pytest.raises(FrameTooLargeError):
        await stream.send(b"x" * 11)
    await stream.send(b"still fine")
    assert await stream.receive() == b"still fine"
    await stream.close()


async def test_receive_above_the_limit() -> None:
    handler, outcome = recording_handler()
    async with await serve("tcp://127.0.0.1:0", handler, max_frame_size=100) as listener:
        stream = await connect(listener.url)
        await stream.send(b"x" * 101)
        assert isinstance(await asyncio.wait_for(outcome, 5), FrameTooLargeError)
        with pytest.raises(TransportClosed):  # the server closed the unusable stream
            await asyncio.wait_for(stream.receive(), 5)
        await stream.close()


@pytest.mark.parametrize("header", [b"\xff\xff\xff\xff", struct.pack(">I", 2**24 + 1)])
async def test_hostile_length_prefix_is_refused_without_reading(header: bytes) -> None:
    handler, outcome = recording_handler()
    async with await serve("tcp://127.0.0.1:0", handler) as listener:
        port = int(listener.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(header)  # and never the body
        await writer.drain()
        assert isinstance(await asyncio.wait_for(outcome, 5), FrameTooLargeError)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("partial", [b"\x00\x00", b"\x00\x00\x00\x64" + b"x" * 10])
async def test_truncated_frame_at_eof_is_closed_not_a_hang(partial: bytes) -> None:
    handler, outcome = recording_handler()
    async with await serve("tcp://127.0.0.1:0", handler) as listener:
        port = int(listener.url.rsplit(":", 1)[1])
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(partial)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        assert isinstance(await asyncio.wait_for(outcome, 5), TransportClosed)


async def test_peer_close_ends_receive_and_send(echo_server: Listener) -> None:
    handler, outcome = recording_handler()
    async with await serve("tcp://127.0.0.1:0", handler) as listener:
        stream = await connect(listener.url)
        await stream.close()
        assert isinstance(await asyncio.wait_for(outcome, 5), TransportClosed)
        with pytest.raises(TransportClosed):
            await stream.send(b"after close")
        with pytest.raises(TransportClosed):
            await stream.receive()


async def test_server_side_close_reaches_the_client() -> None:
    async def hang_up(stream: FrameStream) -> None:
        await stream.send(b"bye")

    async with await serve("tcp://127.0.0.1:0", hang_up) as listener:
        stream = await connect(listener.url)
        assert await stream.receive() == b"bye"
        with pytest.raises(TransportClosed):
            await asyncio.wait_for(stream.receive(), 5)
        await stream.close()


async def test_many_concurrent_connections(echo_server: Listener) -> None:
    async def client(i: int) -> None:
        stream = await connect(echo_server.url)
        try:
            for j in range(5):
                frame = f"{i}:{j}".encode() * (i + 1)
                await stream.send(frame)
                assert await stream.receive() == frame
        finally:
            await stream.close()

    await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(100))), 30)


async def test_concurrent_senders_keep_frames_whole(echo_server: Listener) -> None:
    stream = await connect(echo_server.url)
    frames = [bytes([i]) * 70_000 for i in range(20)]
    await asyncio.gather(*(stream.send(f) for f in frames))
    got = [await stream.receive() for _ in frames]
    assert sorted(got) == sorted(frames)
    await stream.close()


async def test_handler_failure_is_logged_without_payload(caplog: pytest.LogCaptureFixture) -> None:
    async def failing(stream: FrameStream) -> None:
        frame = await stream.receive()
        raise RuntimeError(frame.decode())

    caplog.set_level(logging.WARNING, logger="sealwire.transport")
    async with await serve("tcp://127.0.0.1:0", failing) as listener:
        stream = await connect(listener.url)
        await stream.send(b"SECRET-PAYLOAD")
        with pytest.raises(TransportClosed):
            await asyncio.wait_for(stream.receive(), 5)
        await stream.close()
    assert "RuntimeError" in caplog.text
    assert "SECRET-PAYLOAD" not in caplog.text


async def test_listener_close_closes_its_connections() -> None:
    handler, outcome = recording_handler()

    async def greet_then_record(stream: FrameStream) -> None:
        await stream.send(b"ready")
        await handler(stream)

    listener = await serve("tcp://127.0.0.1:0", greet_then_record)
    stream = await connect(listener.url)
    assert await stream.receive() == b"ready"  # the handler runs
    await listener.close()
    await listener.close()
    assert isinstance(await asyncio.wait_for(outcome, 5), TransportClosed)
    with pytest.raises(TransportClosed):
        await asyncio.wait_for(stream.receive(), 5)
    await stream.close()
    with pytest.raises(TransportError):
        await connect(listener.url, timeout=2)


async def test_connection_limit() -> None:
    async def hold(stream: FrameStream) -> None:
        await stream.send(b"ready")
        await stream.receive()

    async with await serve("tcp://127.0.0.1:0", hold, max_connections=2) as listener:
        kept = [await connect(listener.url) for _ in range(2)]
        for stream in kept:
            assert await stream.receive() == b"ready"
        extra = await connect(listener.url)
        with pytest.raises(TransportClosed):
            await asyncio.wait_for(extra.receive(), 5)
        for stream in [*kept, extra]:
            await stream.close()


async def test_connect_refused_is_a_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransportError, match="cannot connect"):
        await connect(f"tcp://127.0.0.1:{port}")


async def feed_raw(blob: bytes) -> list[bytes | BaseException]:
    """Write raw bytes to a server, close, and return what its receive() produced."""
    seen: list[bytes | BaseException] = []
    done = asyncio.Event()

    async def handler(stream: FrameStream) -> None:
        try:
            while True:
                seen.append(await stream.receive())
        except Exception as exc:
            seen.append(exc)
        finally:
            done.set()

    async with await serve("tcp://127.0.0.1:0", handler, max_frame_size=64) as listener:
        port = int(listener.url.rsplit(":", 1)[1])
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(blob)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(done.wait(), 5)
    return seen


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_frames_then_closed_or_decode_error(blob: bytes) -> None:
    seen = asyncio.run(feed_raw(blob))
    *frames, end = seen
    assert all(isinstance(f, bytes) and len(f) <= 64 for f in frames)
    assert isinstance(end, TransportClosed | DecodeError)
