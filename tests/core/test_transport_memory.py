"""In-memory frame streams and datagram endpoints."""

from __future__ import annotations

import asyncio

import pytest

from sealwire.transport import (
    DatagramEndpoint,
    FrameStream,
    FrameTooLargeError,
    TransportClosed,
    memory_datagram_pair,
    memory_pair,
)


async def test_pair_carries_frames_both_ways_in_order() -> None:
    a, b = memory_pair()
    assert isinstance(a, FrameStream) and a.peer_address == "memory"
    for i in range(10):
        await a.send(bytes([i]) * i)
    assert [await b.receive() for _ in range(10)] == [bytes([i]) * i for i in range(10)]
    await b.send(b"back")
    assert await a.receive() == b"back"
    await a.close()
    await b.close()


async def test_limit_applies_on_send() -> None:
    a, b = memory_pair(max_frame_size=8)
    await a.send(b"12345678")
    with pytest.raises(FrameTooLargeError):
        await a.send(b"123456789")
    assert await b.receive() == b"12345678"


async def test_close_drains_then_ends_the_peer() -> None:
    a, b = memory_pair()
    await a.send(b"last")
    await a.close()
    await a.close()  # idempotent
    assert await b.receive() == b"last"
    with pytest.raises(TransportClosed):
        await b.receive()
    with pytest.raises(TransportClosed):
        await a.send(b"x")
    with pytest.raises(TransportClosed):
        await b.send(b"to a closed peer")
    with pytest.raises(TransportClosed):
        await a.receive()


async def test_close_wakes_a_pending_receive() -> None:
    a, b = memory_pair()
    pending = asyncio.ensure_future(b.receive())
    await asyncio.sleep(0)
    await a.close()
    with pytest.raises(TransportClosed):
        await asyncio.wait_for(pending, 1)


async def test_backpressure_blocks_then_close_releases_the_sender() -> None:
    a, b = memory_pair()
    sent = 0

    async def flood() -> None:
        nonlocal sent
        while True:
            await a.send(b"x")
            sent += 1

    task = asyncio.ensure_future(flood())
    await asyncio.sleep(0.05)
    assert 0 < sent <= 64  # MEMORY_STREAM_CAPACITY bounds what is in flight
    await b.close()
    with pytest.raises(TransportClosed):
        await asyncio.wait_for(task, 1)


async def test_datagram_pair_round_trip_and_limit() -> None:
    a, b = memory_datagram_pair(max_datagram_size=100)
    assert isinstance(a, DatagramEndpoint)
    await a.send(b"ping")
    assert await b.receive() == b"ping"
    with pytest.raises(FrameTooLargeError):
        await a.send(b"x" * 101)
    await b.close()
    await a.send(b"lost")  # datagrams to a closed peer are lost, not errors
    with pytest.raises(TransportClosed):
        await b.receive()


async def test_datagram_queue_is_bounded_and_loss_can_be_simulated() -> None:
    a, b = memory_datagram_pair(loss_for_testing=lambda d: d.startswith(b"drop"))
    for i in range(300):
        await a.send(str(i).encode())
    await a.send(b"drop me")
    received = []
    while True:
        try:
            received.append(await asyncio.wait_for(b.receive(), 0.01))
        except TimeoutError:
            break
    assert received == [str(i).encode() for i in range(256)]
    assert b.dropped == 44  # type: ignore[attr-defined]
    await a.close()
    await b.close()
