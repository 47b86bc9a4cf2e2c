"""Name lookups (``sealwire.transport.resolve``) with a resolver that never answers:
the caller fails at the timeout, and the lookup left behind holds up neither the
event loop's end nor later lookups beyond the bound on lookups under way. The
dials and the webhook calls resolve through it."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sealwire.agent._push import PushPolicy, resolve_webhook
from sealwire.testing.ports import free_port
from sealwire.transport import (
    TransportError,
    _resolve,
    connect,
    connect_datagram,
    connect_first,
    resolve,
    serve,
)

# On failure the event loop's end waits for the hung lookup this long.
HUNG_SECONDS = 10.0


@pytest.fixture
def hung_resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """getaddrinfo of a name blocks until the event is set (at most HUNG_SECONDS);
    numeric addresses still resolve."""
    release = threading.Event()
    real = socket.getaddrinfo

    def hung(host: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("flags", 0) & socket.AI_NUMERICHOST:
            return real(host, *args, **kwargs)
        release.wait(HUNG_SECONDS)
        raise socket.gaierror(socket.EAI_AGAIN, "no answer")

    monkeypatch.setattr(socket, "getaddrinfo", hung)
    yield release
    release.set()
    for thread in threading.enumerate():  # the next test starts with no lookup left over
        if thread.name == "sealwire-lookup":
            thread.join(HUNG_SECONDS)


def test_a_hung_lookup_fails_at_its_timeout_and_the_loop_ends_without_it(
    hung_resolver: threading.Event,
) -> None:
    async def attempt() -> None:
        with pytest.raises(TransportError, match=r"resolving hooks\.example timed out"):
            await resolve("hooks.example", 443, timeout=0.2)

    start = time.monotonic()
    asyncio.run(attempt())  # ends with the loop, which waited for its executor's threads
    assert time.monotonic() - start < HUNG_SECONDS / 2


def test_lookups_under_way_are_bounded(
    hung_resolver: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_resolve, "_lookups", threading.BoundedSemaphore(1))

    async def attempts() -> None:
        with pytest.raises(TransportError, match="timed out"):
            await resolve("hooks.example", 443, timeout=0.2)
        with pytest.raises(TransportError, match="under way"):  # the first one still hangs
            await resolve("hooks.example", 443, timeout=0.2)
        assert await resolve("127.0.0.1", 443) == [(socket.AF_INET, ("127.0.0.1", 443))]
        hung_resolver.set()
        for _ in range(100):  # the hung lookup ends: its place is free again
            await asyncio.sleep(0.01)
            if _resolve._lookups.acquire(blocking=False):
                _resolve._lookups.release()
                return
        raise AssertionError("the lookup's place was never freed")

    asyncio.run(attempts())


def test_a_webhook_whose_host_does_not_resolve_fails_the_attempt(
    hung_resolver: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_resolve, "RESOLVE_TIMEOUT", 0.2)

    async def attempt() -> None:
        with pytest.raises(TransportError, match="timed out"):
            await resolve_webhook("https://hooks.example/a2a", PushPolicy())

    asyncio.run(attempt())


async def test_a_name_is_looked_up_in_a_thread_and_an_address_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real, threads = socket.getaddrinfo, []

    def recorded(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recorded)
    assert await resolve("127.0.0.1", 80) == [(socket.AF_INET, ("127.0.0.1", 80))]
    assert await resolve("::1", 80) == [(socket.AF_INET6, ("::1", 80, 0, 0))]
    assert threads == ["MainThread", "MainThread"]  # numeric: no lookup, no thread
    found = await resolve("localhost", 80, kind=socket.SOCK_DGRAM)
    assert found and all(sockaddr[1] == 80 for _, sockaddr in found)
    assert threads[2:] == ["MainThread", "sealwire-lookup"]


async def test_a_failed_lookup_is_a_transport_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def unknown(host: str, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    with pytest.raises(TransportError, match=r"cannot resolve agent\.example: Name or service"):
        await resolve("agent.example", 80)
    with pytest.raises(TransportError, match=r"cannot resolve agent\.example"):
        await connect("tcp://agent.example:80")


async def test_a_name_that_is_not_a_host_name_is_a_transport_error() -> None:
    label = "a" * 64  # one over DNS's limit: IDNA refuses to encode it
    with pytest.raises(TransportError, match="not a valid host name"):
        await resolve(f"{label}.example", 80)
    with pytest.raises(TransportError, match="not a valid host name"):
        await connect(f"tcp://{label}.example:80")


async def test_tcp_and_udp_dial_a_name() -> None:
    port = free_port()

    async def echo(stream: Any) -> None:
        await stream.send(await stream.receive())

    listener = await serve(f"tcp://127.0.0.1:{port}", echo)
    try:
        stream = await connect(f"tcp://localhost:{port}")
        await stream.send(b"hello")
        assert await stream.receive() == b"hello"
        await stream.close()
    finally:
        await listener.close()
    endpoint = await connect_datagram(f"udp://localhost:{port}")
    await endpoint.close()


async def test_connect_first_tries_each_address_in_turn() -> None:
    port, refused = free_port(), free_port()
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)

    async def dial(address: str, port: int, family: socket.AddressFamily) -> int:
        _reader, writer = await asyncio.open_connection(address, port, family=family)
        writer.close()
        return port

    try:
        v4 = socket.AF_INET
        both = [(v4, ("127.0.0.1", refused)), (v4, ("127.0.0.1", port))]
        assert await connect_first(both, dial) == port
        with pytest.raises(ConnectionRefusedError):
            await connect_first([(v4, ("127.0.0.1", refused))], dial)
        with pytest.raises(TransportError, match="no address"):
            await connect_first([], dial)
    finally:
        server.close()
        await server.wait_closed()
