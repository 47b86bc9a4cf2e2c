"""The NATS backend's shared mode (several relay processes on one prefix): the
server keeps the mailbox depth, and a slot whose message never came (its relay
process died between the two publishes) is freed when the mailbox is full."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator

import pytest

from sealwire.errors import ConfigurationError
from sealwire.relay import Delivery, LimitExceeded
from sealwire_relay._nats_backend import NatsBackend
from sealwire_relay._nats_slots import SLOT_AT

DEPTH = 3
_prefixes = itertools.count(1)


@pytest.fixture
async def pair(nats_url: str) -> AsyncIterator[tuple[NatsBackend, NatsBackend]]:
    """Two backends (as two relay processes would have) on one prefix, shared."""
    prefix = f"SH{os.getpid()}N{next(_prefixes)}"
    backends = [NatsBackend([nats_url], prefix=prefix, shared=True) for _ in range(2)]
    for backend in backends:
        await backend.start()
    try:
        yield backends[0], backends[1]
    finally:
        for backend in backends:
            await backend.close()


def _delivery(i: int) -> Delivery:
    return Delivery(message_id=f"m{i}", sender="sw1sender", envelope=b"x", received_at=1.0)


async def _enqueue(backend: NatsBackend, i: int) -> bool | str:
    try:
        return await backend.enqueue("box", _delivery(i), max_depth=DEPTH)
    except LimitExceeded:
        return "full"


async def test_depth_is_exact_across_backends_and_acks_free_slots(
    pair: tuple[NatsBackend, NatsBackend],
) -> None:
    a, b = pair
    results = await asyncio.gather(*(_enqueue(a if i % 2 else b, i) for i in range(10)))
    assert results.count(True) == DEPTH
    admitted = [i for i, r in enumerate(results) if r is True]
    assert await _enqueue(a, admitted[0]) is False  # a pending duplicate, mailbox full
    fetched = await a.fetch("box", 10)
    assert await b.ack("box", [(d.sender, d.message_id) for d in fetched[:1]]) == 1
    again = await asyncio.gather(*(_enqueue(a if i % 2 else b, i) for i in range(20, 24)))
    assert again.count(True) == 1
    assert await a.mailbox_depth("box") == DEPTH


async def test_an_orphan_slot_is_freed_when_the_mailbox_is_full(
    pair: tuple[NatsBackend, NatsBackend],
) -> None:
    a, _ = pair
    assert await a.enqueue("box", _delivery(0), max_depth=DEPTH)
    # Two slots taken by a relay process that died before publishing the messages
    # (long ago), as _take_slot would: the mailbox looks full.
    for i in (1, 2):
        await a.streams.js.publish(
            a.mailboxes.slots.subject("box"),
            a.mailboxes.subject("box", f"orphan{i}", "sw1x").encode(),
            headers={SLOT_AT: "0"},
        )
    assert await a.enqueue("box", _delivery(3), max_depth=DEPTH)  # orphans freed
    assert await a.enqueue("box", _delivery(4), max_depth=DEPTH)
    with pytest.raises(LimitExceeded):
        await a.enqueue("box", _delivery(5), max_depth=DEPTH)
    assert {d.message_id for d in await a.fetch("box", 10)} == {"m0", "m3", "m4"}


@pytest.mark.parametrize(
    "options", [{"shared": "yes"}, {"replicas": 0}, {"replicas": 6}, {"replicas": "3"}]
)
def test_bad_shared_or_replicas_options_are_configuration_errors(options: dict) -> None:
    with pytest.raises(ConfigurationError):
        NatsBackend.from_options(options)


async def test_a_publish_no_stream_answers_is_sent_again_until_one_does(
    pair: tuple[NatsBackend, NatsBackend],
) -> None:
    # The slot stream is gone and the other process is about to create it (its
    # first enqueue does): a's publish gets "no responders", which stored nothing;
    # it is sent again, not reported as the relay being unavailable.
    a, b = pair
    assert await a.enqueue("box", _delivery(0), max_depth=DEPTH)
    await a.streams.js.delete_stream(a.streams.stream("SLOT"))

    async def later() -> bool:
        await asyncio.sleep(0.2)
        return await b.enqueue("box", _delivery(2), max_depth=DEPTH)

    assert await asyncio.gather(a.enqueue("box", _delivery(1), max_depth=DEPTH), later()) == [
        True,
        True,
    ]
    assert {d.message_id for d in await a.fetch("box", 10)} == {"m0", "m1", "m2"}
