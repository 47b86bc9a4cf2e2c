"""The relay stream's fall backs, for a client behind a front that refuses the stream
(a proxy, or an older relay): sends over HTTP, and deliveries over the push WebSocket
(``WS /v1/mailbox/ws``), whose window moves with the acks made over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from loopback_relay import serving_relay_app
from waiting import next_items

from sealwire.asgi import Receive, Scope, Send
from sealwire.identity import Identity
from sealwire.relay import Delivery, RelayClient
from sealwire.relay.wire import STREAM_PATH
from sealwire_relay import _app as relay_app
from sealwire_relay._app import RelayApp
from sealwire_relay._sqlite_backend import SqliteBackend

TIMEOUT = 20


class _Front:
    """A front of a relay refusing some WebSocket paths (as a proxy, or an older relay)."""

    def __init__(self, app: RelayApp, refused: Callable[[str], bool]) -> None:
        self.app, self.refused = app, refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.refused(scope["path"]):
            await receive()
            await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
            return
        await self.app(scope, receive, send)


@pytest.fixture
async def http_only_relay(tmp_path: Path) -> AsyncIterator[str]:
    async for url in _fronted_relay(tmp_path, lambda path: True):
        yield url


@pytest.fixture
async def relay_without_stream(tmp_path: Path) -> AsyncIterator[str]:
    """A relay as one without the stream route: only the push WebSocket."""
    async for url in _fronted_relay(tmp_path, lambda path: path == STREAM_PATH):
        yield url


async def _fronted_relay(tmp_path: Path, refused: Callable[[str], bool]) -> AsyncIterator[str]:
    backend = SqliteBackend(tmp_path / "fronted.sqlite3")
    await backend.start()
    try:
        async with serving_relay_app(backend, lambda app: _Front(app, refused)) as (url, _):
            yield url
    finally:
        await backend.close()


async def test_falls_back_to_http_when_the_stream_cannot_be_opened(
    http_only_relay: str,
) -> None:
    async with (
        RelayClient(http_only_relay, Identity.generate()) as alice,
        RelayClient(http_only_relay, Identity.generate()) as bob,
    ):
        # Refused at the upgrade (HTTP 403): no stream, at once rather than after a timeout.
        assert not await asyncio.wait_for(bob.open_stream(timeout=3600), TIMEOUT)
        await bob.send(alice.agent_id, "m1", b"over HTTP")
        assert not bob.streaming
        (got,) = await alice.fetch()
        assert got.envelope == b"over HTTP"
        await alice.ack([got])
        assert await alice.fetch() == []


async def test_the_push_websocket_refills_its_window_when_acked(
    relay_without_stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ack over HTTP wakes the push WebSocket whose window was full (not its poll)."""
    monkeypatch.setattr(relay_app, "WS_WINDOW", 2)
    monkeypatch.setattr(relay_app, "WS_POLL_SECONDS", 3600.0)
    async with (
        RelayClient(relay_without_stream, Identity.generate()) as alice,
        RelayClient(relay_without_stream, Identity.generate()) as bob,
    ):
        for n in range(3):
            await bob.send(alice.agent_id, f"m{n}", b"x")
        stream = alice.subscribe()
        first = await next_items(stream, 2)
        assert not alice.streaming
        await alice.ack(first)
        (third,) = await next_items(stream, 1)
        assert third.message_id == "m2"
        await stream.aclose()


async def test_the_push_websocket_reads_on_and_reads_its_window_back_only_when_full(
    relay_without_stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New mail is read on from the last delivery pushed; the window is read back (to
    forget what the acks removed) only once it is full. It was read back at every
    wake, each ack's included."""
    monkeypatch.setattr(relay_app, "WS_WINDOW", 5)
    monkeypatch.setattr(relay_app, "WS_POLL_SECONDS", 3600.0)
    window_reads = []
    fetch = SqliteBackend.fetch

    async def counted(self: SqliteBackend, mailbox: str, limit: int) -> list[Delivery]:
        window_reads.append(limit)
        return await fetch(self, mailbox, limit)

    monkeypatch.setattr(SqliteBackend, "fetch", counted)
    async with (
        RelayClient(relay_without_stream, Identity.generate()) as alice,
        RelayClient(relay_without_stream, Identity.generate()) as bob,
    ):
        stream = alice.subscribe()
        got = []
        for n in range(4):  # the window never fills: acked as they come
            await bob.send(alice.agent_id, f"m{n}", b"x")
            got += await next_items(stream, 1)
            await alice.ack(got[-1:])
        assert window_reads == []
        for n in range(4, 12):  # a backlog: the window fills, and acks make room
            await bob.send(alice.agent_id, f"m{n}", b"x")
        while len(got) < 12:
            got += await next_items(stream, 1)
            await alice.ack(got[-1:])
        assert [d.message_id for d in got] == [f"m{n}" for n in range(12)]
        await stream.aclose()
