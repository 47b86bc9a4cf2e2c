"""A webhook's name lookup that hangs (a resolver that never answers): the delivery
attempt fails at its timeout, and the lookup left behind holds up neither the event
loop's end nor later attempts beyond the bound on lookups under way."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sealwire.agent import _push
from sealwire.agent._push import PushPolicy, resolve_webhook

HOOK = "https://hooks.example/a2a"
# On failure the event loop's end waits for the hung lookup this long.
HUNG_SECONDS = 10.0


@pytest.fixture
def hung_resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """getaddrinfo blocks until the event is set (at most HUNG_SECONDS)."""
    release = threading.Event()

    def hung(*args: Any, **kwargs: Any) -> Any:
        release.wait(HUNG_SECONDS)
        raise socket.gaierror(socket.EAI_AGAIN, "no answer")

    monkeypatch.setattr(socket, "getaddrinfo", hung)
    monkeypatch.setattr(_push, "RESOLVE_TIMEOUT", 0.2)
    yield release
    release.set()
    for thread in threading.enumerate():  # the next test starts with no lookup left over
        if thread.name == "sealwire-webhook-lookup":
            thread.join(HUNG_SECONDS)


def test_a_hung_lookup_fails_the_attempt_and_the_loop_ends_without_it(
    hung_resolver: threading.Event,
) -> None:
    async def attempt() -> None:
        with pytest.raises(OSError, match="timed out"):
            await resolve_webhook(HOOK, PushPolicy())

    start = time.monotonic()
    asyncio.run(attempt())  # ends with the loop, which waited for its executor's threads
    assert time.monotonic() - start < HUNG_SECONDS / 2


def test_lookups_under_way_are_bounded(
    hung_resolver: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_push, "_lookups", threading.BoundedSemaphore(1))

    async def attempts() -> None:
        with pytest.raises(OSError, match="timed out"):
            await resolve_webhook(HOOK, PushPolicy())
        with pytest.raises(OSError, match="under way"):  # the first one still hangs
            await resolve_webhook(HOOK, PushPolicy())
        hung_resolver.set()
        for _ in range(100):  # the hung lookup ends: its place is free again
            await asyncio.sleep(0.01)
            if _push._lookups.acquire(blocking=False):
                _push._lookups.release()
                return
        raise AssertionError("the lookup's place was never freed")

    asyncio.run(attempts())
