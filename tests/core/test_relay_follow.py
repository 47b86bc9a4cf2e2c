"""The relay client's followed WebSockets (group logs, the older mailbox push): closing
one ends it, even when the connection fails as it closes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from sealwire.relay import _websocket


class _Session:
    url = "http://relay.invalid"
    token = "token"

    async def authenticate(self, stale: str | None) -> str:
        return self.token


class _Socket:
    """One message, then a close that fails with ``failure``."""

    def __init__(self, failure: Exception) -> None:
        self.failure = failure

    async def __aenter__(self) -> _Socket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        raise self.failure

    def __aiter__(self) -> _Socket:
        self.sent = False
        return self

    async def __anext__(self) -> str:
        if self.sent:
            await asyncio.Event().wait()  # no more pushes
        self.sent = True
        return '{"n": 1}'


FAILURES = [
    OSError("connection reset while closing"),  # was caught: connect again, for ever
    ConnectionClosed(Close(4403, "forbidden"), None),  # was raised in place of the close
]


@pytest.mark.parametrize("failure", FAILURES, ids=["reset", "refused"])
async def test_a_follow_closed_as_its_socket_fails_ends_and_reconnects_no_more(
    monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    opened: list[str] = []

    def open_websocket(session: Any, path: str, token: str, tls: Any) -> _Socket:
        opened.append(path)
        if len(opened) > 1:
            raise OSError("relay unreachable")  # a reconnection would retry for ever
        return _Socket(failure)

    monkeypatch.setattr(_websocket, "open_websocket", open_websocket)
    follow = _websocket.follow(
        _Session(), None, "/v1/groups/ws", lambda item: item, lambda item: None
    )  # type: ignore[arg-type]
    assert await anext(follow) == {"n": 1}
    await asyncio.wait_for(follow.aclose(), 5)  # ends: its reader's close waits on it
    assert opened == ["/v1/groups/ws"]
