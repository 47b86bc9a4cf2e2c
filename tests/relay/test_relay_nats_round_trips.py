"""The NATS backend in few round trips (issue 14), seen from the server's side.

A second NATS connection subscribes to everything and keeps ``$JS.API.>`` and the
relay's subjects, so the test sees every JetStream request and publish the backend
makes: an enqueue is one publish (and one read of the acknowledgement record,
at the same time), a fetch creates no consumer, an ack does not read the
message again.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from waiting import until

from sealwire.relay import Delivery, LimitExceeded
from sealwire_relay._nats_backend import NatsBackend

_prefixes = itertools.count(1)
BACKLOG = 100
# The Nats-Msg-Id window the test sets, to get past it quickly.
SHORT_WINDOW_SECONDS = 0.2


class Watch:
    def __init__(self) -> None:
        self.subjects: list[str] = []

    def since(self, mark: int) -> list[str]:
        return self.subjects[mark:]


@pytest.fixture
async def watched(nats_url: str) -> AsyncIterator[tuple[NatsBackend, Watch, str]]:
    prefix = f"RT{os.getpid()}N{next(_prefixes)}"
    backend = NatsBackend([nats_url], prefix=prefix)
    await backend.start()
    watch = Watch()
    nc: Any = await nats.connect(nats_url)

    watched_prefixes = ("$JS.API.", f"{prefix.lower()}.")

    async def seen(msg: Any) -> None:
        if msg.subject.startswith(watched_prefixes):
            watch.subjects.append(msg.subject)

    # One subscription: nats-py runs each subscription's callbacks in a task of its own,
    # so with two the marker (_settle) could be seen before earlier API requests were.
    await nc.subscribe(">", cb=seen)
    await nc.flush()
    try:
        yield backend, watch, prefix
    finally:
        await nc.close()
        await backend.close()


async def _quiet(backend: NatsBackend, watch: Watch, prefix: str) -> int:
    """A mark after which the watcher sees nothing of what the backend sent before: the
    earlier traffic reaches the watcher asynchronously, so wait for it to arrive first."""
    await _settle(backend, watch, len(watch.subjects), prefix)
    return len(watch.subjects)


async def _settle(backend: NatsBackend, watch: Watch, mark: int, prefix: str) -> list[str]:
    """Everything the backend sent since ``mark``: a marker published on the backend's
    own connection reaches the watcher after every earlier request of it."""
    marker = f"{prefix.lower()}.marker.{len(watch.subjects)}"
    await backend.streams.nc.publish(marker, b"")
    await backend.streams.nc.flush()
    await until(lambda: marker in watch.subjects, "the marker")
    seen = watch.since(mark)
    return seen[: seen.index(marker)]


def _delivery(i: int) -> Delivery:
    return Delivery(message_id=f"m{i}", sender="sw1sender", envelope=b"x" * 64, received_at=1.0)


async def test_enqueue_is_one_publish(watched: tuple[NatsBackend, Watch, str]) -> None:
    backend, watch, prefix = watched
    assert await backend.enqueue("box", _delivery(0), max_depth=10)  # counts the depth once
    mark = await _quiet(backend, watch, prefix)
    assert await backend.enqueue("box", _delivery(1), max_depth=10)
    seen = await _settle(backend, watch, mark, prefix)
    publishes = [s for s in seen if s.startswith(f"{prefix.lower()}.mb.")]
    api = [s for s in seen if s.startswith("$JS.API.")]
    assert len(publishes) == 1
    assert len(api) == 1 and f"{prefix}_ACKS" in api[0]  # the acknowledgement record, at once
    assert not await backend.enqueue("box", _delivery(1), max_depth=10)  # still idempotent


async def test_fetch_and_ack_without_consumers_or_rereads(
    watched: tuple[NatsBackend, Watch, str],
) -> None:
    backend, watch, prefix = watched
    for i in range(BACKLOG):
        await backend.enqueue("box", _delivery(i), max_depth=10 * BACKLOG)
    mark = await _quiet(backend, watch, prefix)
    got = await backend.fetch("box", BACKLOG)
    assert [d.message_id for d in got] == [f"m{i}" for i in range(BACKLOG)]
    fetch_requests = await _settle(backend, watch, mark, prefix)
    assert fetch_requests and not [s for s in fetch_requests if ".CONSUMER." in s]
    mark = len(watch.subjects)
    assert await backend.ack("box", [(d.sender, d.message_id) for d in got]) == BACKLOG
    seen = await _settle(backend, watch, mark, prefix)
    mbox = f"{prefix}_MBOX"
    rereads = [s for s in seen if (".MSG.GET." in s or ".DIRECT.GET." in s) and mbox in s]
    assert rereads == []
    assert len([s for s in seen if ".MSG.DELETE." in s]) == BACKLOG
    assert await backend.fetch("box", BACKLOG) == []
    assert not await backend.enqueue("box", _delivery(5), max_depth=10)  # acked: a duplicate


async def test_a_push_reads_on_after_the_last_message_it_read(
    watched: tuple[NatsBackend, Watch, str],
) -> None:
    """fetch_after a message this process read starts at that message's stream sequence,
    acknowledged or not: the messages before it are not read again (a stream's push
    read only what it had not pushed)."""
    backend, watch, prefix = watched
    for i in range(BACKLOG):
        await backend.enqueue("box", _delivery(i), max_depth=10 * BACKLOG)
    first = await backend.fetch_after("box", None, BACKLOG)
    assert [d.message_id for d in first] == [f"m{i}" for i in range(BACKLOG)]
    last = (first[-1].sender, first[-1].message_id)
    assert await backend.ack("box", [last]) == 1  # acknowledged: still where to read on from
    for i in range(BACKLOG, BACKLOG + 3):
        await backend.enqueue("box", _delivery(i), max_depth=10 * BACKLOG)
    mark = await _quiet(backend, watch, prefix)
    later = await backend.fetch_after("box", last, BACKLOG)
    assert [d.message_id for d in later] == [f"m{i}" for i in range(BACKLOG, BACKLOG + 3)]
    seen = await _settle(backend, watch, mark, prefix)
    reads = [s for s in seen if ".DIRECT.GET." in s and f"{prefix}_MBOX" in s]
    assert 3 <= len(reads) < 10  # the three new ones (and the end), not the hundred before
    # A message that ended none of its reads (read by another relay process, say): the
    # pending messages up to it are read again and skipped.
    assert [d.message_id for d in await backend.fetch_after("box", ("sw1sender", "m97"), 2)] == [
        "m98", "m100"
    ]  # fmt: skip
    # ... and the next push reads on after the last one handed out (m100), not the last read.
    mark = await _quiet(backend, watch, prefix)
    rest = await backend.fetch_after("box", ("sw1sender", "m100"), BACKLOG)
    assert [d.message_id for d in rest] == ["m101", "m102"]
    seen = await _settle(backend, watch, mark, prefix)
    assert len([s for s in seen if ".DIRECT.GET." in s and f"{prefix}_MBOX" in s]) < 10


async def test_depth_is_exact_under_concurrent_enqueues(
    watched: tuple[NatsBackend, Watch, str],
) -> None:
    backend, _, _ = watched
    limit, tries = 10, 60
    assert await backend.enqueue("full", _delivery(1000), max_depth=limit)  # depth now known

    async def one(i: int) -> str:
        try:
            fresh = await backend.enqueue("full", _delivery(i), max_depth=limit)
        except LimitExceeded:
            return "refused"
        return "fresh" if fresh else "dup"

    results = await asyncio.gather(*(one(i) for i in range(tries)))
    assert results.count("fresh") == limit - 1
    assert results.count("refused") == tries - limit + 1
    assert len(await backend.fetch("full", 100)) == limit


async def test_an_acknowledged_id_stays_a_duplicate_beyond_the_duplicate_window(
    watched: tuple[NatsBackend, Watch, str],
) -> None:
    """Past JetStream's Nats-Msg-Id window, the relay's own record (P_ACKS) decides."""
    backend, _, prefix = watched
    js = backend.streams.js
    info = await js.stream_info(f"{prefix}_MBOX")
    await js.update_stream(_with_duplicate_window(info.config, SHORT_WINDOW_SECONDS))
    assert await backend.enqueue("box", _delivery(1), max_depth=10)
    got = await backend.fetch("box", 10)
    assert await backend.ack("box", [(d.sender, d.message_id) for d in got]) == 1
    # Poll until an id registered after ours is no longer a duplicate: ours is out too.
    probe = f"{prefix.lower()}.mb.probe"
    await js.publish(probe + ".0", b"", headers={"Nats-Msg-Id": "probe"})
    tries = iter(range(1, 10**6))

    async def window_passed() -> bool:
        ack = await js.publish(f"{probe}.{next(tries)}", b"", headers={"Nats-Msg-Id": "probe"})
        return not ack.duplicate

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not await window_passed():
        assert loop.time() < deadline, "the duplicate window never passed"
        await asyncio.sleep(0.05)
    assert not await backend.enqueue("box", _delivery(1), max_depth=10)
    assert await backend.fetch("box", 10) == []


def _with_duplicate_window(config: Any, seconds: float) -> Any:
    config.duplicate_window = seconds
    return config
