"""The relay stream (``WS /v1/stream``): batched, pipelined sends, acks and deliveries,
on both backends (see conftest.py); hostile frames; SIGKILL of a relay process mid-batch.
The fall backs (HTTP, the push WebSocket): test_relay_stream_fallbacks.py."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import websockets
import websockets.asyncio.client
from loopback_relay import serving_relay_app
from relay_process import RelayProcess
from waiting import next_items, until

from sealwire.identity import Identity
from sealwire.relay import Delivery, LimitExceeded, RelayClient, RelayUnavailable
from sealwire.relay import _stream as client_stream
from sealwire.relay.wire import STREAM_MAX_BATCH, STREAM_PATH, b64e, stream_frame
from sealwire_relay import RelayConfig, RelayLimits, RunningRelay, running_relay
from sealwire_relay import _stream as relay_stream
from sealwire_relay._sqlite_backend import SqliteBackend
from sealwire_relay._stream import STREAM_INFLIGHT_FRAMES, STREAM_WINDOW

NewClient = Callable[..., RelayClient]
TIMEOUT = 20


async def _held_back_until_acked(
    client: RelayClient, inbox: AsyncIterator[Delivery], held: int, n: int
) -> list[Delivery]:
    """The first ``held`` of ``n`` deliveries come, then nothing (the relay's window is
    full) until they are acknowledged; then the rest, each acknowledged as it comes."""
    window = await next_items(inbox, held)
    late = asyncio.ensure_future(anext(inbox))
    await asyncio.sleep(0.2)  # (only to show that nothing more comes)
    assert not late.done()
    await client.ack(window)
    got = [*window, await asyncio.wait_for(late, TIMEOUT)]
    while len(got) < n:
        got.append(await asyncio.wait_for(anext(inbox), TIMEOUT))
        await client.ack(got[-1:])
    return got


async def _raw(client: RelayClient) -> Any:
    """A bare WebSocket on the stream, authenticated as ``client``'s agent."""
    token = await client._session.authenticate(None)
    ws = await websockets.connect(
        client.url.replace("http", "ws") + STREAM_PATH,
        additional_headers={"authorization": f"Bearer {token}"},
    )
    assert json.loads(await ws.recv())["t"] == "ready"
    return ws


async def _frame(ws: Any, kind: str) -> dict[str, Any]:
    """The next frame of type ``kind`` (deliveries and others skipped)."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if frame["t"] == kind:
            return frame  # type: ignore[no-any-return]


def _item(rid: int, to: str, mid: str, data: bytes) -> dict[str, Any]:
    return {"id": rid, "recipient": to, "message_id": mid, "envelope": b64e(data)}


async def test_pipelined_sends_deliveries_and_acks(clients: NewClient) -> None:
    alice, bob = clients(), clients()
    assert await alice.open_stream() and await bob.open_stream()
    n = 2 * STREAM_WINDOW + 88  # more than the window and than a batch: several of each
    await asyncio.gather(*(bob.send(alice.agent_id, f"m{i}", b"%d" % i) for i in range(n)))
    await bob.send(alice.agent_id, "m0", b"0")  # a retry: stored once
    inbox = alice.subscribe()
    # The relay pushes a window ahead of the acks, and moves on with them.
    got = await _held_back_until_acked(alice, inbox, STREAM_WINDOW, n)
    assert sorted(d.message_id for d in got) == sorted(f"m{i}" for i in range(n))
    assert all(d.envelope == d.message_id[1:].encode() for d in got)
    assert alice.streaming and bob.streaming
    await alice.ack(got)
    await inbox.aclose()
    assert await alice.fetch() == []  # fetch waits for the stream's acks first


async def test_what_the_window_has_no_bytes_for_waits_for_acks(
    clients: NewClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Handed over by a commit while the pusher follows the mailbox: three deliveries
    fit in the window's bytes, the fourth waits (the pusher neither spins nor skips
    it) until acks make room."""
    monkeypatch.setattr(relay_stream, "STREAM_WINDOW_BYTES", 3500)
    alice, bob = clients(), clients()
    assert await alice.open_stream() and await bob.open_stream()
    inbox = alice.subscribe()
    await bob.send(alice.agent_id, "first", b"x")
    got = [await asyncio.wait_for(anext(inbox), TIMEOUT)]  # the pusher follows the commits
    await alice.ack(got)
    n = 10
    await asyncio.gather(*(bob.send(alice.agent_id, f"m{i}", b"%04d" % i * 250) for i in range(n)))
    got = await _held_back_until_acked(alice, inbox, 3, n)
    assert sorted(d.message_id for d in got) == [f"m{i}" for i in range(n)]
    await inbox.aclose()


async def test_the_window_counts_envelope_bytes_too_and_reads_what_fits(
    relay: RunningRelay, clients: NewClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Envelopes that fill the window's bytes long before its count: the window holds
    what its bytes allow, and each read of the mailbox asks for what the acks made
    room for, not for all that waits (which was read again, and mostly dropped,
    after every few acks)."""
    monkeypatch.setattr(relay_stream, "STREAM_WINDOW_BYTES", 3000)
    backend, read = relay.service.backend, []
    if isinstance(backend, SqliteBackend):
        read_after = backend.read_after

        def counted_read(*args: Any) -> Any:
            batch, epoch = read_after(*args)
            read.append(len(batch))
            return batch, epoch

        monkeypatch.setattr(backend, "read_after", counted_read)
    else:
        fetch_after = backend.fetch_after

        async def counted_fetch(*args: Any) -> Any:
            batch = await fetch_after(*args)
            read.append(len(batch))
            return batch

        monkeypatch.setattr(backend, "fetch_after", counted_fetch)
    alice, bob = clients(), clients()
    assert await alice.open_stream() and await bob.open_stream()
    n = 40
    await asyncio.gather(*(bob.send(alice.agent_id, f"m{i}", b"%04d" % i * 250) for i in range(n)))
    inbox = alice.subscribe()
    got = await _held_back_until_acked(alice, inbox, 3, n)  # 3 x 1000 bytes fill it
    assert sorted(d.message_id for d in got) == sorted(f"m{i}" for i in range(n))
    await inbox.aclose()
    # The first read knows no envelope's size yet and reads what the count allows; after
    # it, each delivery is read about once (at most one more per read).
    assert sum(read[1:]) <= n + len(read)


async def test_acks_made_over_http_free_the_window_at_the_next_poll(
    relay: RunningRelay, clients: NewClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_stream, "STREAM_WINDOW", 3)
    monkeypatch.setattr(relay_stream, "STREAM_POLL_SECONDS", 0.2)
    identity = Identity.generate()
    alice, over_http, bob = clients(identity), clients(identity), clients()
    assert await alice.open_stream() and await bob.open_stream()
    await asyncio.gather(*(bob.send(alice.agent_id, f"m{i}", b"x") for i in range(6)))
    inbox = alice.subscribe()
    window = await next_items(inbox, 3)
    await over_http.ack(window)  # not on the stream: its window stays full
    rest = await next_items(inbox, 3)  # the poll saw the window held up and read the mailbox
    assert sorted(d.message_id for d in window + rest) == [f"m{i}" for i in range(6)]
    await inbox.aclose()


async def test_a_window_that_acks_move_is_not_read_again_at_each_poll(
    relay: RunningRelay, clients: NewClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poll reads the whole window back from storage only when no ack moved it
    since the poll before (acks made elsewhere may hold it up): one read per
    connection and poll would grow with a fleet's backlogs."""
    monkeypatch.setattr(relay_stream, "STREAM_WINDOW", 5)
    monkeypatch.setattr(relay_stream, "STREAM_POLL_SECONDS", 0.2)
    backend, reads = relay.service.backend, []
    fetch = backend.fetch

    async def counted(mailbox: str, limit: int) -> list[Delivery]:
        reads.append(mailbox)
        return await fetch(mailbox, limit)

    monkeypatch.setattr(backend, "fetch", counted)
    alice, bob = clients(), clients()
    assert await alice.open_stream() and await bob.open_stream()
    n = 60
    await asyncio.gather(*(bob.send(alice.agent_id, f"m{i}", b"x") for i in range(n)))
    inbox = alice.subscribe()
    started = time.monotonic()
    for _ in range(n):  # acked one at a time, a few every poll
        await alice.ack(await next_items(inbox, 1))
        await asyncio.sleep(0.02)
    assert time.monotonic() - started > 5 * 0.2  # polls came (each read the window before)
    assert reads.count(alice.agent_id) <= 2  # (a loaded machine may stall past a poll)
    await inbox.aclose()


async def test_acks_are_held_and_coalesced_then_sent_when_many_or_flushed(
    clients: NewClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acks are off every caller's path: the stream holds them (here for a minute)
    so that those of several deliveries share one frame and one relay commit; a
    quarter of the relay's window sends them at once, and so does a flush."""
    monkeypatch.setattr(client_stream, "ACK_LINGER_SECONDS", 60.0)
    frames: list[list[Any]] = []
    real_send = websockets.asyncio.client.ClientConnection.send

    async def counted(ws: Any, message: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(message, str) and message.startswith('{"t":"ack"'):
            frames.append(json.loads(message)["acks"])
        await real_send(ws, message, *args, **kwargs)

    monkeypatch.setattr(websockets.asyncio.client.ClientConnection, "send", counted)
    alice, bob = clients(), clients()
    assert await alice.open_stream() and await bob.open_stream()
    held = client_stream.ACK_FRAME_ITEMS
    n = held + 6
    await asyncio.gather(*(bob.send(alice.agent_id, f"m{i}", b"x") for i in range(n)))
    inbox = alice.subscribe()
    got = await next_items(inbox, n)
    for delivery in got[:10]:  # one at a time, as a mailbox reader does
        await alice.ack([delivery])
    await asyncio.sleep(0.2)
    assert frames == []  # held
    for delivery in got[10:held]:
        await alice.ack([delivery])
    await until(lambda: len(frames) == 1, "the held acks sent together")
    assert [key[1] for key in frames[0]] == [d.message_id for d in got[:held]]
    await alice.ack(got[held:])
    await inbox.aclose()
    assert await alice.fetch() == []  # a fetch flushes the stream's acks first
    assert [len(f) for f in frames] == [held, n - held]


async def test_a_dropped_stream_redelivers_only_the_unacknowledged(
    make_config: Callable[..., RelayConfig],
) -> None:
    config = make_config("drop")
    async with running_relay(config) as relay:
        alice = RelayClient(relay.url, Identity.generate())
        bob = RelayClient(relay.url, Identity.generate())
        await bob.open_stream()
        for i in range(10):
            await bob.send(alice.agent_id, f"m{i}", b"x")
        inbox = alice.subscribe()
        got = await next_items(inbox, 10)
        await alice.ack(got[:4])
        await until(lambda: not alice._mailbox_stream._acks_sent, "acks confirmed")  # type: ignore[union-attr]
    async with running_relay(config):  # the stream reconnects and subscribes again
        again = await next_items(inbox, 6)
        assert [d.message_id for d in again] == [f"m{i}" for i in range(4, 10)]
        await alice.ack(again)
        await inbox.aclose()
        assert await alice.fetch() == []
        await alice.close()
        await bob.close()


async def test_a_new_subscription_right_after_closing_one_stays_on_the_stream(
    clients: NewClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing a subscription ends its stream subscription at once, so the next one
    (an agent's mailbox reader resubscribing after a backoff) is served by the stream
    too, not by the older push WebSocket."""
    from sealwire.relay import _client

    def no_fallback(*args: object) -> object:
        raise AssertionError("fell back to the push WebSocket")

    monkeypatch.setattr(_client, "follow", no_fallback)
    alice, bob = clients(), clients()
    for i in range(3):
        await bob.send(alice.agent_id, f"m{i}", b"x")
    for round_ in range(3):
        inbox = alice.subscribe()
        (got,) = await next_items(inbox, 1)
        assert got.message_id == f"m{round_}"
        await alice.ack([got])
        await inbox.aclose()
    assert alice.streaming


async def test_hostile_frames_get_typed_errors_and_the_connection_keeps_serving(
    clients: NewClient,
) -> None:
    alice, bob, carol = clients(), clients(), clients()
    ws = await _raw(bob)
    try:
        # A malformed item is refused on its own; its neighbours are stored.
        await ws.send(json.dumps({"t": "send", "items": [
            _item(1, alice.agent_id, "good", b"g"),
            {"id": 2, "recipient": alice.agent_id, "message_id": "bad", "envelope": 123},
            _item(3, "not an agent", "x", b"x"),
        ]}))  # fmt: skip
        result = await _frame(ws, "result")
        assert [i["id"] for i in result["items"]] == [1, 2, 3]
        assert result["items"][0] == {"id": 1, "duplicate": False}
        assert result["items"][1]["error"]["code"] == "bad_request"
        assert result["items"][2]["error"]["field"] == "recipient"
        # An oversized batch is refused as a whole.
        many = [_item(i, alice.agent_id, f"n{i}", b"n") for i in range(STREAM_MAX_BATCH + 1)]
        await ws.send(json.dumps({"t": "send", "items": many}))
        error = await _frame(ws, "error")
        assert error["error"]["code"] == "limit_exceeded" and error["error"]["limit"] == "batch"
        # A bad field of a frame: a typed error, not a closed connection.
        await ws.send(json.dumps({"t": "ack", "id": -1, "acks": []}))
        assert (await _frame(ws, "error"))["error"]["field"] == "id"
        # Carol's message in Alice's mailbox, then forged, foreign and replayed acks.
        await carol.send(alice.agent_id, "c1", b"from carol")
        await carol.send(bob.agent_id, "c2", b"to bob")
        (to_bob,) = await bob.fetch()
        await ws.send(json.dumps({"t": "ack", "id": 7, "acks": [
            [carol.agent_id, "c1"],  # another agent's message: not in Bob's mailbox
            [carol.agent_id, "never-sent"],  # forged
            [carol.agent_id, "c2"],  # Bob's own: removed
        ]}))  # fmt: skip
        acked = await _frame(ws, "acked")
        assert acked["id"] == 7 and acked["removed"] == 1
        assert acked["unknown"] == [[carol.agent_id, "c1"], [carol.agent_id, "never-sent"]]
        assert acked["error"]["code"] == "not_found"
        await ws.send(json.dumps({"t": "ack", "id": 8, "acks": [[to_bob.sender, "c2"]]}))
        replayed = await _frame(ws, "acked")  # already acknowledged
        assert replayed["removed"] == 0 and replayed["error"]["code"] == "not_found"
        assert sorted(d.message_id for d in await alice.fetch()) == ["c1", "good"]
        # Still serving after all that.
        await ws.send(json.dumps({"t": "send", "items": [_item(9, alice.agent_id, "ok", b"o")]}))
        assert (await _frame(ws, "result"))["items"] == [{"id": 9, "duplicate": False}]
        # A framing error closes this connection, and only this one.
        other = await _raw(carol)
        await ws.send("this is not JSON")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await _frame(ws, "never")
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
        await other.send(json.dumps({"t": "send", "items": [_item(1, alice.agent_id, "z", b"")]}))
        assert (await _frame(other, "result"))["items"] == [{"id": 1, "duplicate": False}]
        await other.close()
    finally:
        await ws.close()


async def test_malformed_binary_frames_close_only_their_connection(clients: NewClient) -> None:
    alice, bob = clients(), clients()
    item = json.dumps({"id": 1, "recipient": alice.agent_id, "message_id": "b"})
    items = '{"t":"send","items":[' + item + "]"
    ws = await _raw(bob)
    try:
        await ws.send(stream_frame(items, [b"raw envelope bytes"]))  # well formed
        assert (await _frame(ws, "result"))["items"] == [{"id": 1, "duplicate": False}]
        await ws.send(stream_frame(items, [b"one", b"two"]))  # two envelopes for one item
        assert (await _frame(ws, "error"))["error"]["field"] == "sizes"
        for bad in (b"\x00\x00", b"\xff\xff\xff\xff{}", stream_frame(items, [b"x"])[:-1]):
            other = await _raw(bob)
            await other.send(bad)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await _frame(other, "never")
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
        await ws.send(stream_frame(items.replace('"b"}', '"c"}'), [b"still serving"]))
        assert (await _frame(ws, "result"))["items"] == [{"id": 1, "duplicate": False}]
    finally:
        await ws.close()
    assert [d.envelope for d in await alice.fetch()] == [b"raw envelope bytes", b"still serving"]


async def test_refusals_at_connect(relay: RunningRelay) -> None:
    url = relay.url.replace("http", "ws") + STREAM_PATH
    async with websockets.connect(url) as ws:  # no token
        with pytest.raises(websockets.ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 4401


async def test_rate_limit_answers_retry_after(make_config: Callable[..., RelayConfig]) -> None:
    limits = RelayLimits(rate_per_second=0.001, rate_burst=2)
    async with (
        running_relay(make_config("rate", limits=limits)) as relay,
        RelayClient(relay.url, Identity.generate()) as bob,
    ):
        ws = await _raw(bob)
        try:
            for rid in (1, 2, 3):  # each frame takes a token, as an HTTP request
                frame = {"t": "send", "items": [_item(rid, bob.agent_id, f"m{rid}", b"")]}
                await ws.send(json.dumps(frame))
            answers = [(await _frame(ws, "result"))["items"][0] for _ in range(3)]
            answers.sort(key=lambda a: int(a["id"]))  # results come as commits end
            assert [a["id"] for a in answers] == [1, 2, 3]
            assert "error" not in answers[0] and "error" not in answers[1]
            assert answers[2]["error"]["limit"] == "rate"
            assert answers[2]["error"]["retry_after"] > 0
        finally:
            await ws.close()
        assert await bob.open_stream()
        with pytest.raises(LimitExceeded) as refused:
            await bob.send(bob.agent_id, "m3", b"")
        assert refused.value.limit == "rate" and refused.value.retry_after


async def test_sigkill_mid_batch_loses_nothing_acknowledged(
    make_config: Callable[..., RelayConfig], tmp_path: Path
) -> None:
    config = make_config("killed")
    proc = RelayProcess.for_config(config, tmp_path)
    await asyncio.to_thread(proc.start)
    alice, bob = Identity.generate(), Identity.generate()
    n = 2000
    confirmed: list[str] = []
    try:
        async with RelayClient(config.url, alice) as a, RelayClient(config.url, bob) as b:
            assert await b.open_stream()

            async def send(i: int) -> None:
                try:
                    await b.send(alice.agent_id, f"m{i}", os.urandom(512))
                except RelayUnavailable:
                    return
                confirmed.append(f"m{i}")

            sending = asyncio.gather(*(send(i) for i in range(n)))
            await until(lambda: len(confirmed) >= 100, "the first results")
            proc.kill()  # with sends queued, in frames, and being committed
            await sending
            await asyncio.to_thread(proc.start)
            stored: list[str] = []
            while batch := await a.fetch(limit=500):
                stored += [d.message_id for d in batch]
                await a.ack(batch)
            assert set(confirmed) <= set(stored)  # acknowledged means durable
            assert len(stored) == len(set(stored))  # and nothing twice
    finally:
        proc.kill()


class _GatedBackend(SqliteBackend):
    """SQLite whose first mailbox commit waits for ``gate``; records each commit's size."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = asyncio.Event()
        self.commits: list[int] = []

    async def commit_mailbox_batch(self, acks: Any, enqueues: Any, *, max_depth: int) -> Any:
        self.commits.append(len(acks) + len(enqueues))
        if len(self.commits) == 1:
            await self.gate.wait()
        return await super().commit_mailbox_batch(acks, enqueues, max_depth=max_depth)


async def test_commits_are_grouped_and_a_fast_sender_is_not_read(tmp_path: Path) -> None:
    backend = _GatedBackend(tmp_path / "gated.sqlite3")
    await backend.start()
    frames = 3 * STREAM_INFLIGHT_FRAMES
    try:
        async with (
            serving_relay_app(backend) as (url, app),
            RelayClient(url, Identity.generate()) as bob,
        ):
            ws = await _raw(bob)
            try:
                for rid in range(frames):  # one item each, as fast as the socket takes them
                    item = _item(rid, bob.agent_id, f"m{rid}", b"e")
                    await ws.send(json.dumps({"t": "send", "items": [item]}))
                committer = app._stream.committer

                def read() -> int:  # frames the relay took in: committing or queued
                    queued = sum(len(job.enqueues) for job in committer._queue)
                    return sum(backend.commits) + queued

                # The first commit is held: the relay reads frames until the connection's
                # in-flight budget is spent, then no more (the rest wait in the socket). The
                # budget may be spent while the committer still gathers: its first commit
                # then follows.
                await until(
                    lambda: len(backend.commits) == 1 and read() == STREAM_INFLIGHT_FRAMES,
                    "a full budget and the first commit held",
                )
                backend.gate.set()
                answers = [(await _frame(ws, "result"))["items"][0] for _ in range(frames)]
                assert sorted(a["id"] for a in answers) == list(range(frames))
                assert all(a == {"id": a["id"], "duplicate": False} for a in answers)
                # Grouped: frames read together went into one commit.
                assert sum(backend.commits) == frames and len(backend.commits) < frames
            finally:
                await ws.close()
    finally:
        await backend.close()
