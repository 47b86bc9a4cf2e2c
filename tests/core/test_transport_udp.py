"""Datagram endpoints over real loopback UDP, demultiplexed per remote address."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest
from waiting import until

from sealwire.transport import (
    DatagramEndpoint,
    FrameTooLargeError,
    TransportClosed,
    connect_datagram,
    serve_datagram,
)


async def echo(endpoint: DatagramEndpoint) -> None:
    while True:
        try:
            datagram = await endpoint.receive()
        except TransportClosed:
            return
        await endpoint.send(endpoint.peer_address.encode() + b"|" + datagram)


async def test_round_trip_and_demultiplexing() -> None:
    async with await serve_datagram("udp://127.0.0.1:0", echo) as listener:
        assert listener.url.startswith("udp://127.0.0.1:")
        clients = [await connect_datagram(listener.url) for _ in range(5)]
        for i, client in enumerate(clients):
            assert client.peer_address == listener.url
            await client.send(f"hello {i}".encode())
        answers = [await asyncio.wait_for(c.receive(), 5) for c in clients]
        addresses = {a.split(b"|")[0] for a in answers}
        assert len(addresses) == 5  # one endpoint per remote address
        assert [a.split(b"|")[1] for a in answers] == [f"hello {i}".encode() for i in range(5)]
        for client in clients:
            await client.close()
            await client.close()
            with pytest.raises(TransportClosed):
                await client.receive()


async def test_size_limits() -> None:
    async with await serve_datagram("udp://127.0.0.1:0", echo, max_datagram_size=100) as listener:
        client = await connect_datagram(listener.url, max_datagram_size=200)
        with pytest.raises(FrameTooLargeError):
            await client.send(b"x" * 201)
        await client.send(b"x" * 150)  # dropped by the server: above its limit
        await client.send(b"ok")
        answer = await asyncio.wait_for(client.receive(), 5)
        assert answer.endswith(b"|ok")
        await client.close()


async def test_peer_limit_drops_new_addresses() -> None:
    async with await serve_datagram("udp://127.0.0.1:0", echo, max_peers=2) as listener:
        clients = [await connect_datagram(listener.url) for _ in range(3)]
        for client in clients[:2]:
            await client.send(b"in")
            await asyncio.wait_for(client.receive(), 5)
        await clients[2].send(b"refused")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(clients[2].receive(), 0.3)
        assert listener.dropped == 1  # type: ignore[attr-defined]
        for client in clients:
            await client.close()


async def test_listener_close_ends_handlers() -> None:
    started, ended = asyncio.Event(), asyncio.Event()

    async def handler(endpoint: DatagramEndpoint) -> None:
        try:
            while True:
                await endpoint.receive()
                started.set()
        except TransportClosed:
            ended.set()

    listener = await serve_datagram("udp://127.0.0.1:0", handler)
    client = await connect_datagram(listener.url)
    await client.send(b"start")
    await asyncio.wait_for(started.wait(), 5)
    await listener.close()
    await listener.close()
    await asyncio.wait_for(ended.wait(), 5)
    await client.close()


async def test_handler_exit_forgets_the_peer() -> None:
    seen: list[bytes] = []

    async def one_shot(endpoint: DatagramEndpoint) -> None:
        seen.append(await endpoint.receive())
        await endpoint.send(b"done")

    async with await serve_datagram("udp://127.0.0.1:0", one_shot) as listener:
        client = await connect_datagram(listener.url)
        for n in (b"1", b"2"):
            await client.send(n)
            assert await asyncio.wait_for(client.receive(), 5) == b"done"
        assert seen == [b"1", b"2"]  # a new endpoint (and handler) after the first ended
        await client.close()


async def test_unreachable_peer_is_not_fatal() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = await connect_datagram(f"udp://127.0.0.1:{port}")
    await client.send(b"into the void")
    await asyncio.sleep(0.05)
    await client.send(b"again")  # ICMP port unreachable must not break the endpoint
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.receive(), 0.1)
    await client.close()


async def test_a_silent_peer_gives_its_slot_back() -> None:
    """A peer that goes silent (a forged session, or one gone) has its endpoint closed
    after the idle timeout, so the peer table never fills for good."""
    ended: list[str] = []

    async def hold(endpoint: DatagramEndpoint) -> None:
        with contextlib.suppress(TransportClosed):
            while True:
                await endpoint.receive()
        ended.append(endpoint.peer_address)

    listener = await serve_datagram("udp://127.0.0.1:0", hold, max_peers=2, idle_timeout=0.4)
    async with listener:
        host, port = listener.url.removeprefix("udp://").rsplit(":", 1)
        for _ in range(2):  # two forgers fill the table, then fall silent
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forger:
                forger.sendto(b"hello", (host, int(port)))
        await until(lambda: len(ended) == 2, "the silent peers closed", 10)
        genuine = await connect_datagram(listener.url)
        try:
            await genuine.send(b"let me in")
            await until(lambda: genuine.peer_address and listener._peers, "a slot again", 10)
        finally:
            await genuine.close()


async def test_a_client_closes_its_endpoint_when_the_server_falls_silent() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        port = silent.getsockname()[1]
        client = await connect_datagram(f"udp://127.0.0.1:{port}", idle_timeout=0.4)
        await client.send(b"anyone?")
        with pytest.raises(TransportClosed):
            await asyncio.wait_for(client.receive(), 10)
        await client.close()
    finally:
        silent.close()
