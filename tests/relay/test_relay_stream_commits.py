"""The stream's grouped commits (``MailboxCommitter``): work that reaches the relay
while a commit gathers joins it, from every connection; a batch that fails answers
every sender with an error and stores nothing; depth limits stay exact per mailbox."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from waiting import until

from sealwire.identity import Identity
from sealwire.relay import RelayClient
from sealwire.relay.errors import RelayUnavailable
from sealwire.relay.wire import STREAM_PATH, b64e
from sealwire_relay import RelayConfig, RelayLimits, RunningRelay, running_relay
from sealwire_relay._sqlite_backend import SqliteBackend
from sealwire_relay._stream_commits import MailboxCommitter

TIMEOUT = 20


class _RecordingBackend(SqliteBackend):
    """SQLite recording the size of each mailbox commit; commits listed in ``hold``
    (by number, from 1) wait for ``gate``, those in ``fail`` raise."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.commits: list[int] = []
        self.hold: set[int] = set()
        self.fail: set[int] = set()
        self.gate = asyncio.Event()

    async def commit_mailbox_batch(self, acks: Any, enqueues: Any, *, max_depth: int) -> Any:
        self.commits.append(len(acks) + len(enqueues))
        number = len(self.commits)
        if number in self.hold:
            await self.gate.wait()
        if number in self.fail:
            raise RelayUnavailable("storage failed")
        return await super().commit_mailbox_batch(acks, enqueues, max_depth=max_depth)


@pytest.fixture
async def recorded(tmp_path: Path) -> AsyncIterator[tuple[RunningRelay, _RecordingBackend]]:
    backend = _RecordingBackend(tmp_path / "relay.sqlite3")
    config = RelayConfig(
        host="127.0.0.1", port=0, identity_path=tmp_path / "relay.key", backend="sqlite",
        limits=RelayLimits(max_mailbox_depth=5),
    )  # fmt: skip
    async with running_relay(config, backend=backend) as relay:
        yield relay, backend


async def _raw(client: RelayClient) -> Any:
    token = await client._session.authenticate(None)
    ws = await websockets.connect(
        client.url.replace("http", "ws") + STREAM_PATH,
        additional_headers={"authorization": f"Bearer {token}"},
    )
    assert json.loads(await ws.recv())["t"] == "ready"
    return ws


def _send(rid: int, to: str, mid: str) -> str:
    item = {"id": rid, "recipient": to, "message_id": mid, "envelope": b64e(b"e")}
    return json.dumps({"t": "send", "items": [item]})


async def _results(ws: Any) -> list[dict[str, Any]]:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if frame["t"] == "result":
            return frame["items"]  # type: ignore[no-any-return]


async def _agents(url: str, n: int) -> tuple[list[RelayClient], list[Any]]:
    clients = [RelayClient(url, Identity.generate()) for _ in range(n)]
    return clients, [await _raw(c) for c in clients]


async def _close(clients: list[RelayClient], sockets: list[Any]) -> None:
    for ws in sockets:
        await ws.close()
    for c in clients:
        await c.close()


async def test_a_frame_arriving_while_a_commit_gathers_joins_it(
    recorded: tuple[RunningRelay, _RecordingBackend],
) -> None:
    relay, backend = recorded
    clients, (first, second) = await _agents(relay.url, 2)
    owner = clients[0].agent_id
    try:
        await first.send(_send(1, owner, "a"))
        await asyncio.sleep(0)  # a turn of the (shared) event loop later, on another connection
        await second.send(_send(2, owner, "b"))
        assert (await _results(first))[0] == {"id": 1, "duplicate": False}
        assert (await _results(second))[0] == {"id": 2, "duplicate": False}
        assert backend.commits == [2]
    finally:
        await _close(clients, [first, second])


async def test_one_call_at_a_time_stops_waiting_for_work_that_does_not_come(
    recorded: tuple[RunningRelay, _RecordingBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    relay, backend = recorded
    gathered: list[bool] = []
    real = MailboxCommitter._gather

    async def counting(self: MailboxCommitter) -> bool:
        gathered.append(await real(self))
        return gathered[-1]

    monkeypatch.setattr(MailboxCommitter, "_gather", counting)
    clients, (first,) = await _agents(relay.url, 1)
    owner = clients[0].agent_id
    try:
        for i in range(3):  # one at a time: the first gathering brings nothing
            await first.send(_send(i, owner, f"m{i}"))
            assert (await _results(first))[0] == {"id": i, "duplicate": False}
        assert gathered == [False]  # the later lone commits did not wait
        assert backend.commits == [1, 1, 1]
    finally:
        await _close(clients, [first])


async def test_a_failed_batch_acknowledges_nothing_to_any_of_its_senders(
    recorded: tuple[RunningRelay, _RecordingBackend],
) -> None:
    relay, backend = recorded
    backend.hold, backend.fail = {1}, {2}
    clients, sockets = await _agents(relay.url, 3)
    owner = clients[0].agent_id
    try:
        await sockets[0].send(_send(0, owner, "held"))
        await _until_commits(backend, 1)
        for k, ws in enumerate(sockets):  # queued behind the held commit: one batch
            await ws.send(_send(10 + k, owner, f"m{k}"))
        backend.gate.set()
        assert (await _results(sockets[0]))[0] == {"id": 0, "duplicate": False}
        for k, ws in enumerate(sockets):
            (answer,) = await _results(ws)
            assert answer["id"] == 10 + k and answer["status"] == 503, answer
            assert answer["error"]["code"] == "unavailable"
        assert len(backend.commits) == 2 and backend.commits[1] == len(sockets)
        stored = await clients[0].fetch()
        assert [d.message_id for d in stored] == ["held"]
    finally:
        await _close(clients, sockets)


async def test_grouped_sends_keep_a_mailbox_depth_limit_exact(
    recorded: tuple[RunningRelay, _RecordingBackend],
) -> None:
    relay, backend = recorded
    backend.hold = {1}
    clients, sockets = await _agents(relay.url, 4)
    owner, other = clients[0].agent_id, clients[1].agent_id
    try:
        await sockets[0].send(_send(0, other, "first"))  # holds the writer
        await _until_commits(backend, 1)
        per = 4
        for k, ws in enumerate(sockets):  # 16 sends to one mailbox of depth 5, one batch
            for j in range(per):
                await ws.send(_send(100 * k + j, owner, f"m{k}.{j}"))
        await sockets[1].send(_send(999, owner, "m1.0"))  # a retry: no excess
        backend.gate.set()
        await _results(sockets[0])
        answers = [a for ws in sockets for _ in range(per) for a in await _results(ws)]
        retry = (await _results(sockets[1]))[0]
        stored = [a for a in answers if a.get("duplicate") is False]
        refused = [a for a in answers if "status" in a]
        assert len(stored) == 5 and len(refused) == len(answers) - 5
        assert all(a["error"]["limit"] == "mailbox_depth" for a in refused)
        # The retry is a duplicate when its first send was stored, else refused too.
        if {"id": 100, "duplicate": False} in stored:
            assert retry == {"id": 999, "duplicate": True}
        else:
            assert retry["error"]["limit"] == "mailbox_depth"
        assert len(await clients[0].fetch()) == 5
        assert len(backend.commits) <= 3  # grouped, not one commit per send
    finally:
        await _close(clients, sockets)


async def _until_commits(backend: _RecordingBackend, n: int) -> None:
    await until(lambda: len(backend.commits) >= n, f"{n} commit(s)")
