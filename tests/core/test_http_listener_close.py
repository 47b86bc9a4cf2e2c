"""A listener's close is bounded even when a connection will not end when cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

from sealwire.transport.http import serve_http


async def test_close_returns_when_an_app_swallows_its_cancellation() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def stubborn(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        started.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # a badly behaved app: it ignores being cancelled
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    listener = await serve_http(stubborn, "http://127.0.0.1:0")
    port = int(listener.url.rsplit(":", 1)[1].split("/", 1)[0])
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.wait_for(listener.close(), 15)  # before: waited for ever
    finally:
        release.set()
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.1)  # the left-behind connection ends, now released
