"""A subscription outlives failures to (re-)authenticate (issue item 15.1).

A 429 (``LimitExceeded``, with or without ``retry_after``) or an unavailable
relay while the client authenticates for its WebSocket is retried with backoff:
nothing there is a refusal proven by an authenticated session, so the stream
goes on and delivers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from sealwire.relay import LimitExceeded, RelayClient, RelayUnavailable

TIMEOUT = 20


async def test_subscription_survives_429_and_unavailable_while_authenticating(
    clients: Callable[..., RelayClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = clients(), clients()
    real = alice._session.authenticate
    failures: list[Exception] = [
        LimitExceeded("rate", "too many requests", retry_after=0.01),
        RelayUnavailable("relay unreachable"),
        LimitExceeded("challenges", "too many outstanding challenges"),
    ]

    async def flaky(stale: str | None) -> str:
        if failures:
            raise failures.pop(0)
        return await real(stale)

    monkeypatch.setattr(alice._session, "authenticate", flaky)
    subscription = alice.subscribe()
    try:
        await bob.send(alice.agent_id, "m1", b"payload")
        delivery = await asyncio.wait_for(anext(subscription), TIMEOUT)
    finally:
        await subscription.aclose()
    assert (delivery.message_id, delivery.envelope) == ("m1", b"payload")
    assert failures == []
