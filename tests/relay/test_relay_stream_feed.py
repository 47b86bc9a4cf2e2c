"""The stream's push from memory (``MailboxFeed``): a pusher that has read its mailbox
to the end is handed what later commits store instead of reading it back, in commit
order, even past its window; storage is read again on (re)subscription, when another
writer shares the file, when more waits than the feed may hold, and after a SIGKILL
of the relay process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from relay_process import RelayProcess
from waiting import until

from sealwire.identity import Identity
from sealwire.relay import Delivery, LimitExceeded, RelayClient, RelayUnavailable
from sealwire_relay import RelayConfig, RelayLimits, _stream, running_relay
from sealwire_relay._sqlite_backend import SqliteBackend
from sealwire_relay._stream import STREAM_WINDOW
from sealwire_relay._stream_feed import MailboxFeed, PushWindow

TIMEOUT = 20
# The statement a pusher reads its mailbox with (after its last pushed delivery).
READ_AFTER_SQL = "acked_at IS NULL AND id>"


class _CountingBackend(SqliteBackend):
    """SQLite, counting the pushers' reads of the mailbox."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads = 0

    async def start(self) -> None:
        await super().start()
        assert self._db is not None

        def trace(sql: str) -> None:
            if READ_AFTER_SQL in sql:
                self.reads += 1

        self._db.set_trace_callback(trace)


def _config(tmp_path: Path, **kwargs: Any) -> RelayConfig:
    return RelayConfig(
        host="127.0.0.1", port=0, identity_path=tmp_path / "relay.key",
        backend="sqlite", backend_options={"path": str(tmp_path / "relay.sqlite3")}, **kwargs,
    )  # fmt: skip


async def _next(inbox: AsyncIterator[Delivery]) -> Delivery:
    return await asyncio.wait_for(anext(inbox), TIMEOUT)


async def test_a_subscribed_mailbox_is_pushed_from_memory_in_order(tmp_path: Path) -> None:
    backend = _CountingBackend(tmp_path / "relay.sqlite3")
    n = 40
    async with running_relay(_config(tmp_path), backend=backend) as relay:
        alice = RelayClient(relay.url, Identity.generate())
        bob = RelayClient(relay.url, Identity.generate())
        try:
            assert await bob.open_stream()
            inbox = alice.subscribe()
            await bob.send(alice.agent_id, "m0", b"0")
            got = [await _next(inbox)]  # the pusher has read the mailbox to its end
            reads = backend.reads
            for i in range(1, n):  # one at a time: each is its own commit
                await bob.send(alice.agent_id, f"m{i}", b"%d" % i)
                got.append(await _next(inbox))
            await alice.ack(got)
            assert [d.message_id for d in got] == [f"m{i}" for i in range(n)]
            assert [d.envelope for d in got] == [b"%d" % i for i in range(n)]
            # Handed over by the commits, not read back (a poll may read once or twice).
            assert backend.reads - reads < n // 4
            await until(lambda: not alice._mailbox_stream._acks_sent, "acks confirmed")  # type: ignore[union-attr]
            await inbox.aclose()
            assert await alice.fetch() == []
        finally:
            await alice.close()
            await bob.close()


async def test_a_write_by_another_connection_is_read_from_storage_in_order(
    tmp_path: Path,
) -> None:
    """Another relay process sharing the SQLite file (here: another connection) stores a
    message: the next local commit sees it and the pusher reads storage again, so
    both come in the order they were stored."""
    async with running_relay(_config(tmp_path)) as relay:
        other = SqliteBackend(tmp_path / "relay.sqlite3")
        await other.start()
        alice = RelayClient(relay.url, Identity.generate())
        bob = RelayClient(relay.url, Identity.generate())
        try:
            assert await bob.open_stream()
            inbox = alice.subscribe()
            await bob.send(alice.agent_id, "first", b"1")
            first = await _next(inbox)  # following the commits from here
            foreign = Delivery(message_id="foreign", sender=bob.agent_id, envelope=b"f",
                               received_at=first.received_at)  # fmt: skip
            assert await other.enqueue(alice.agent_id, foreign, max_depth=100)
            await bob.send(alice.agent_id, "local", b"2")
            got = [first, await _next(inbox), await _next(inbox)]
            assert [d.message_id for d in got] == ["first", "foreign", "local"]
            await alice.ack(got)
            await until(lambda: not alice._mailbox_stream._acks_sent, "acks confirmed")  # type: ignore[union-attr]
            await inbox.aclose()
        finally:
            await alice.close()
            await bob.close()
            await other.close()


async def test_another_connection_s_write_alone_is_pushed_by_the_poll(tmp_path: Path) -> None:
    """With no local commit after it, another process's message reaches a pusher that
    follows the commits by the poll (STREAM_POLL_SECONDS), which reads storage."""
    async with running_relay(_config(tmp_path)) as relay:
        other = SqliteBackend(tmp_path / "relay.sqlite3")
        await other.start()
        alice = RelayClient(relay.url, Identity.generate())
        bob = RelayClient(relay.url, Identity.generate())
        try:
            assert await bob.open_stream()
            inbox = alice.subscribe()
            await bob.send(alice.agent_id, "first", b"1")
            first = await _next(inbox)
            foreign = Delivery(message_id="foreign", sender=bob.agent_id, envelope=b"f",
                               received_at=first.received_at)  # fmt: skip
            assert await other.enqueue(alice.agent_id, foreign, max_depth=100)
            assert (await _next(inbox)).message_id == "foreign"
            await alice.ack([first, foreign])
            await until(lambda: not alice._mailbox_stream._acks_sent, "acks confirmed")  # type: ignore[union-attr]
            await inbox.aclose()
        finally:
            await alice.close()
            await bob.close()
            await other.close()


async def _burst_past_the_window(relay_url: str, backend: _CountingBackend) -> int:
    """More than the window sent at once to a mailbox followed by its pusher, received
    and acknowledged one by one; the pusher's reads of storage meanwhile."""
    n = STREAM_WINDOW * 3
    alice = RelayClient(relay_url, Identity.generate())
    bob = RelayClient(relay_url, Identity.generate())
    try:
        assert await bob.open_stream()
        inbox = alice.subscribe()
        await bob.send(alice.agent_id, "m0", b"0")
        got = [await _next(inbox)]  # the pusher has read the mailbox to its end
        await alice.ack(got)
        reads = backend.reads
        await asyncio.gather(*(bob.send(alice.agent_id, f"m{i}", b"%d" % i) for i in range(1, n)))
        while len(got) < n:
            got.append(await _next(inbox))
            await alice.ack(got[-1:])
        assert sorted(d.message_id for d in got) == sorted(f"m{i}" for i in range(n))
        assert len({d.message_id for d in got}) == n
        await until(lambda: not alice._mailbox_stream._acks_sent, "acks confirmed")  # type: ignore[union-attr]
        await inbox.aclose()
        assert await alice.fetch() == []
        return backend.reads - reads
    finally:
        await alice.close()
        await bob.close()


def _limits(n: int) -> RelayLimits:
    return RelayLimits(max_mailbox_depth=2 * n, rate_per_second=1e6, rate_burst=10**6)


async def test_a_burst_past_the_window_is_pushed_from_memory(tmp_path: Path) -> None:
    backend = _CountingBackend(tmp_path / "relay.sqlite3")
    config = _config(tmp_path, limits=_limits(STREAM_WINDOW * 3))
    async with running_relay(config, backend=backend) as relay:
        # The commits queue what the window has no room for yet (a poll may read).
        assert await _burst_past_the_window(relay.url, backend) <= 2


async def test_more_than_the_feed_holds_is_read_from_storage_and_nothing_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_stream, "FEED_SINK_BYTES", 16)  # a few deliveries' envelopes
    backend = _CountingBackend(tmp_path / "relay.sqlite3")
    config = _config(tmp_path, limits=_limits(STREAM_WINDOW * 3))
    async with running_relay(config, backend=backend) as relay:
        assert await _burst_past_the_window(relay.url, backend) > 2


@pytest.mark.parametrize("backend_name", ["sqlite"])  # the push from memory is SQLite's
async def test_pushed_from_memory_then_sigkill_redelivers_in_order_only_the_unacked(
    make_config: Callable[..., RelayConfig], tmp_path: Path
) -> None:
    """One sender, one at a time (so the commit order is m0, m1, ...); the relay is
    killed with SIGKILL while messages are being committed and pushed. Every message
    arrives; on each connection in commit order; again only if it came before the
    kill (unacknowledged then); and the mailbox ends empty."""
    config = make_config("feedkill")
    proc = RelayProcess.for_config(config, tmp_path)
    await asyncio.to_thread(proc.start)
    n, kill_after = 120, 40
    alice, bob = Identity.generate(), Identity.generate()
    try:
        async with RelayClient(config.url, alice) as a, RelayClient(config.url, bob) as b:
            assert await b.open_stream()
            inbox = a.subscribe()
            confirmed = 0  # m0 .. m(confirmed - 1) are stored

            async def send_all() -> None:
                nonlocal confirmed
                while confirmed < n:
                    try:
                        await b.send(alice.agent_id, f"m{confirmed}", b"x")
                    except RelayUnavailable:
                        await asyncio.sleep(0.05)  # the relay is restarting: retry the same
                        continue
                    confirmed += 1

            sending = asyncio.ensure_future(send_all())
            got: list[int] = []
            before_kill: set[int] = set()
            killed = False
            try:
                while len(set(got)) < n:
                    d = await _next(inbox)
                    got.append(int(d.message_id[1:]))
                    await a.ack([d])
                    if not killed and len(got) >= kill_after:
                        before_kill = set(got)
                        proc.kill()
                        killed = True
                        await asyncio.to_thread(proc.start)
                await asyncio.wait_for(sending, TIMEOUT)
            finally:
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)
            assert set(got) == set(range(n))
            repeated = [i for k, i in enumerate(got) if i in got[:k]]
            assert set(repeated) <= before_kill  # at least once: only what was in flight
            # In commit order, except where the new connection starts again from
            # the oldest unacknowledged message.
            restarts = sum(1 for k in range(1, len(got)) if got[k] <= got[k - 1])
            assert restarts <= 1
            await until(lambda: not a._mailbox_stream._acks_sent, "acks confirmed")  # type: ignore[union-attr]
            await inbox.aclose()
            assert await a.fetch() == []
    finally:
        proc.kill()


def _delivery(sender: str, message_id: str) -> Delivery:
    return Delivery(message_id=message_id, sender=sender, envelope=b"e", received_at=1.0)


async def test_depths_are_kept_between_commits_and_exact_with_another_writer(
    tmp_path: Path,
) -> None:
    """A commit reads a mailbox's depth from memory (no SELECT) while this connection
    is the file's only writer; a write by another connection (another relay process)
    makes it read the depth from the file again, so the limit stays exact."""
    path = tmp_path / "shared.sqlite3"
    ours, theirs = SqliteBackend(path), SqliteBackend(path)
    await ours.start()
    await theirs.start()
    statements: list[str] = []
    assert ours._db is not None
    ours._db.set_trace_callback(statements.append)
    try:
        assert await ours.enqueue("bob", _delivery("alice", "m1"), max_depth=3)
        statements.clear()
        assert await ours.enqueue("bob", _delivery("alice", "m2"), max_depth=3)
        assert not [s for s in statements if "FROM depths" in s]  # known: not read
        # Another process stores one: bob's mailbox is full (3) ...
        assert await theirs.enqueue("bob", _delivery("carol", "m3"), max_depth=3)
        with pytest.raises(LimitExceeded):
            await ours.enqueue("bob", _delivery("alice", "m4"), max_depth=3)
        # ... until it acknowledges one there.
        assert await theirs.ack("bob", [("carol", "m3")]) == 1
        assert await ours.enqueue("bob", _delivery("alice", "m4"), max_depth=3)
        with pytest.raises(LimitExceeded):
            await ours.enqueue("bob", _delivery("alice", "m5"), max_depth=3)
        # Acks through this connection's own HTTP path keep it exact as well.
        assert await ours.ack("bob", [("alice", "m1")]) == 1
        assert await ours.enqueue("bob", _delivery("alice", "m5"), max_depth=3)
        assert len(await theirs.fetch("bob", 10)) == 3
    finally:
        await ours.close()
        await theirs.close()


def test_the_feed_holds_at_most_its_bounds_and_gives_back_what_is_taken() -> None:
    feed = MailboxFeed(sink_bytes=10, total_bytes=15)
    a, b = feed.follow("a", epoch=1), feed.follow("b", epoch=1)
    four = [
        Delivery(message_id=f"m{i}", sender="s", envelope=b"1234", received_at=0.0)
        for i in range(4)
    ]
    feed.committed(1, [("a", four[0]), ("a", four[1]), ("b", four[2])])
    assert feed.queued_bytes == 12 and not a.broken and not b.broken
    feed.committed(1, [("a", four[3])])  # 16 in all: past the total, a breaks
    assert a.broken and a.queue == [] and feed.queued_bytes == 4
    assert feed.take(b, PushWindow(5, 100)) == [four[2]] and feed.queued_bytes == 0
    feed.committed(1, [("b", d) for d in four[:2]])
    feed.committed(1, [("b", four[2])])  # 12 for one sink: past its own bound
    assert b.broken and feed.queued_bytes == 0
    c = feed.follow("c", epoch=1)
    feed.committed(2, [("c", four[0])])  # another writer's commit: the order is unproven
    assert c.broken
    d = feed.follow("d", epoch=2)
    feed.committed(2, [("d", four[0]), ("d", four[1])])
    feed.leave("d", d)
    assert feed.queued_bytes == 0


def test_the_push_window_counts_deliveries_and_bytes_and_lets_a_large_one_alone() -> None:
    def d(i: int, size: int) -> Delivery:
        return Delivery(message_id=f"m{i}", sender="s", envelope=b"x" * size, received_at=0.0)

    window = PushWindow(3, 10)
    assert window.fit([d(0, 4), d(1, 4), d(2, 4)]) == 2  # 12 bytes: the third waits
    assert window.fit([d(0, 50), d(1, 1)]) == 1  # larger than the room: alone
    window.add(d(0, 4))
    window.add(d(0, 4))  # pushed again: counted once
    window.add(d(1, 4))
    # Room for one more by count, none by the bytes of the average delivery (4 of 2 left).
    assert window.bytes == 8 and window.room() == 0
    assert window.fit([d(2, 4)]) == 0  # no room for its bytes: it waits
    assert window.fit([d(2, 2), d(3, 1)]) == 1  # room for one more, by count
    window.add(d(2, 2))
    assert window.room() == 0 and window.fit([d(3, 1)]) == 0
    window.remove(("s", "m0"))
    window.keep({("s", "m2")})
    assert window.bytes == 2 and ("s", "m2") in window and ("s", "m1") not in window


def test_the_push_window_room_counts_the_bytes_of_a_typical_delivery() -> None:
    def d(i: int, size: int) -> Delivery:
        return Delivery(message_id=f"m{i}", sender="s", envelope=b"x" * size, received_at=0.0)

    window = PushWindow(1024, 64_000)
    assert window.room() == 1024  # no size known yet: by count
    for i in range(16):
        window.add(d(i, 1000))
    assert window.room() == 48  # 48,000 bytes left, 1,000 a delivery
    for i in range(16):
        window.remove(("s", f"m{i}"))
    assert window.room() == 64  # empty: by the size of the last one added
    window.add(d(99, 100_000))
    window.remove(("s", "m99"))
    assert window.room() == 1  # larger than the window: one goes alone, never none
