"""The mailbox router on its host protocol, with a scripted relay port (no network).

* routes: a payload wrapped under a registered name goes to its handler and is
  acknowledged once handled;
* the supervisor restarts a reader that ends or fails, whatever ends it, and the
  host's health says so until mail flows again;
* an acknowledgement refused (429 with ``retry_after``, relay unavailable) is
  retried, never given up;
* a handler's store failure leaves the delivery with the relay, which delivers it
  again on the next subscription; a malformed payload is acknowledged and dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import pytest
from waiting import until

from sealwire.agent._mailbox import READER_COMPONENT, MailboxRouter
from sealwire.agent._mailbox_homes import previous_homes
from sealwire.binding import PeerIdentity, SecureChannel
from sealwire.codec import Request
from sealwire.relay import Delivery, LimitExceeded, RelayUnavailable, wrap
from sealwire.store import MemoryStore, StoreError


class _Host:
    """A RouterHost recording what the router reports."""

    agent_id = "host"

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.health: dict[str, str] = {}
        self.reports: list[tuple[str, str | None]] = []

    @property
    def card(self) -> Any:
        raise AssertionError("no channel in these tests")

    def check_peer(self, peer: PeerIdentity) -> None:
        pass

    def serve_incoming(self, channel: SecureChannel, binding: str) -> None:
        raise AssertionError("no channel in these tests")

    def dispatch(self, request: Request, peer: PeerIdentity, *, receipt: Any = None) -> Any:
        raise AssertionError("no request in these tests")

    async def resume_task(self, task_id: str, peer: PeerIdentity) -> Any:
        raise AssertionError("no task in these tests")

    def report_health(self, component: str, problem: str | None) -> None:
        self.reports.append((component, problem))
        if problem is None:
            self.health.pop(component, None)
        else:
            self.health[component] = problem


class _Relay:
    """A mailbox as a relay keeps it: each subscription pushes what is unacknowledged,
    then what arrives. ``failures`` are raised by the next subscriptions, one each;
    ``ack_failures`` by the next acknowledgements."""

    url = "https://relay.test"

    def __init__(self) -> None:
        self.others: dict[str, _Relay] = {}
        self.pending: list[Delivery] = []
        self.acked: list[str] = []
        self.subscriptions = 0
        self.failures: list[BaseException | None] = []
        self.ack_failures: list[BaseException] = []
        self._arrived = asyncio.Event()

    def put(self, message_id: str, payload: bytes) -> None:
        self.pending.append(
            Delivery(message_id=message_id, sender="peer", envelope=payload, received_at=0.0)
        )
        self._arrived.set()

    async def subscribe(self) -> AsyncGenerator[Delivery, None]:
        self.subscriptions += 1
        if self.failures:
            failure = self.failures.pop(0)
            if failure is None:
                return  # the subscription just ends
            raise failure
        sent: set[str] = set()
        while True:
            for delivery in list(self.pending):
                if delivery.message_id not in sent:
                    sent.add(delivery.message_id)
                    yield delivery
            self._arrived.clear()
            await self._arrived.wait()

    def signed_in_at(self, url: str) -> _Relay:
        """The mailbox at another relay (one this agent left)."""
        if url not in self.others:
            self.others[url] = _Relay()
            self.others[url].url = url
        return self.others[url]

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        if self.ack_failures:
            raise self.ack_failures.pop(0)
        for d in deliveries:
            self.acked.append(d.message_id)
            self.pending = [p for p in self.pending if p.message_id != d.message_id]


@pytest.fixture
async def router() -> Any:
    host, relay = _Host(), _Relay()
    made = MailboxRouter(host, relay, {})  # type: ignore[arg-type]
    yield made
    await made.stop()


def _routed(router: MailboxRouter) -> list[bytes]:
    """The payloads the router hands to a route registered for "mls", as they come."""
    got: list[bytes] = []

    async def invitation(payload: bytes) -> None:
        got.append(payload)

    router.route("mls", invitation)
    return got


async def test_a_route_gets_its_payloads_and_they_are_acknowledged(router: Any) -> None:
    got = _routed(router)
    await router.start()
    router.relay.put("w1", wrap("mls", b"welcome"))
    await until(lambda: router.relay.acked == ["w1"], "the acknowledgement")
    assert got == [b"welcome"]


async def test_the_mailbox_at_a_relay_the_agent_left_is_read_and_acknowledged_there(
    router: Any,
) -> None:
    got = _routed(router)
    previous_homes(router.host.store, "https://left.test", time.time())  # homed there before
    await router.start()
    left = router.relay.signed_in_at("https://left.test")
    left.put("old", wrap("mls", b"sent to the old card"))
    router.relay.put("new", wrap("mls", b"sent to the new one"))
    await until(lambda: left.acked == ["old"] and router.relay.acked == ["new"], "both acks")
    assert sorted(got) == [b"sent to the new one", b"sent to the old card"]


async def test_supervisor_restarts_a_reader_that_ends_or_fails_and_reports_it(
    router: Any,
) -> None:
    got = _routed(router)
    router.relay.failures = [None, RelayUnavailable("down"), RuntimeError("a bug")]
    router.relay.put("w1", wrap("mls", b"welcome"))
    await router.start()
    await until(lambda: router.relay.acked == ["w1"], "the acknowledgement after restarts")
    assert got == [b"welcome"]
    assert router.restarts == 3
    problems = [p for c, p in router.host.reports if c == READER_COMPONENT and p is not None]
    assert problems == [
        "the relay ended the mailbox subscription",
        "the mailbox reader failed: RelayUnavailable",
        "the mailbox reader failed: RuntimeError",
    ]
    assert router.host.health == {}  # mail flows again: healthy


async def test_refused_acknowledgements_are_retried(router: Any) -> None:
    async def invitation(payload: bytes) -> None:
        pass

    router.route("mls", invitation)
    router.relay.ack_failures = [
        LimitExceeded("rate", "too many requests", retry_after=0.01),
        RelayUnavailable("down"),
        LimitExceeded("rate", "too many requests"),
    ]
    await router.start()
    router.relay.put("w1", wrap("mls", b"welcome"))
    await until(lambda: router.relay.acked == ["w1"], "the acknowledgement")
    assert router.relay.ack_failures == []
    assert router.restarts == 0  # the reader never stopped


async def test_a_store_failure_leaves_the_delivery_with_the_relay(router: Any) -> None:
    attempts: list[bytes] = []

    async def invitation(payload: bytes) -> None:
        attempts.append(payload)
        if len(attempts) == 1:
            raise StoreError("sqlite: OperationalError: database or disk is full")

    router.route("mls", invitation)
    await router.start()
    router.relay.put("w1", wrap("mls", b"welcome"))
    await until(lambda: router.relay.acked == ["w1"], "the delivery handled on a new subscription")
    assert attempts == [b"welcome", b"welcome"]
    assert router.relay.subscriptions == 2


async def test_a_malformed_payload_is_acknowledged_and_dropped(router: Any) -> None:
    await router.start()
    router.relay.put("bad", b"\x09tr")  # a binding name longer than the payload
    router.relay.put("unknown", wrap("nobody", b"x"))
    await until(lambda: sorted(router.relay.acked) == ["bad", "unknown"], "the drops")
    assert router.relay.subscriptions == 1
