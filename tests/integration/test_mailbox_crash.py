"""Issue item 15.5: nothing acknowledged is lost, and nothing done twice, when the
receiving agent crashes.

The receiver runs in its own process on a SQLite store and is killed with SIGKILL
again and again, at random points between receiving a request, recording its
task, handling it and sending the answer, while a sender has N requests in
flight through a real relay. After the restarts every request is answered
exactly once: each call gets its own answer, the receiver's store holds exactly
one task per request, its inbox and owed answers are empty, and the sender never
saw a second answer to a request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ports import free_port
from waiting import until

from sealwire.agent import Agent
from sealwire.codec import from_json
from sealwire.identity import Identity
from sealwire.model import Task, TaskState
from sealwire.relay import RelayClient
from sealwire.store import MemoryStore, SqliteStore, StoreKey
from sealwire_relay import RelayConfig, running_relay

REQUESTS = 30
KILLS = 6
TIMEOUT = 90
"""Seconds for every request to be answered once the kills are over."""
MAX_KILL_DELAY = 0.6
"""A kill by time lands this long at most after the receiver is ready: while it serves."""
SCRIPT = Path(__file__).with_name("mailbox_crash_agent.py")


class _Receiver:
    """The receiving agent's process: started, killed with SIGKILL, started again."""

    def __init__(self, directory: Path, relay_url: str) -> None:
        self.store = directory / "receiver.db"
        self.card_file = directory / "receiver-card.json"
        self.relay_url = relay_url
        self.key = StoreKey.generate()
        self.handling: list[str] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.runs = 0

    async def start(self) -> None:
        self.runs += 1
        self._ready = asyncio.Event()
        env = {**os.environ, "SEALWIRE_STORE_KEY": self.key.export_for_file().decode().strip()}
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SCRIPT), str(self.store), self.relay_url, str(self.card_file),
            str(self.runs), stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read(self._proc))
        await asyncio.wait_for(self._ready.wait(), 60)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode().strip()
            if line == "ready":
                self._ready.set()
            elif line.startswith("handling "):
                self.handling.append(line.removeprefix("handling "))

    async def kill(self) -> None:
        if self._proc is not None:
            if self._proc.returncode is None:
                self._proc.kill()
            await self._proc.wait()
            assert self._reader is not None
            await self._reader
            self._proc = None


@pytest.fixture
async def relay_url(tmp_path: Path) -> AsyncIterator[str]:
    config = RelayConfig(
        port=free_port(), identity_path=tmp_path / "relay.key", backend="sqlite",
        backend_options={"path": str(tmp_path / "relay.sqlite3")},
    )  # fmt: skip
    async with running_relay(config) as relay:
        yield relay.url


async def test_receiver_killed_repeatedly_every_request_answered_exactly_once(
    tmp_path: Path, relay_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sealwire.agent._rpc")
    rng = random.Random(1505)
    receiver = _Receiver(tmp_path, relay_url)
    await receiver.start()
    sender_id = Identity.generate()
    sender_relay = RelayClient(relay_url, sender_id)
    sender = Agent(
        sender_id, MemoryStore(), name="sender", relay=sender_relay,
    )  # fmt: skip
    calls: list[asyncio.Future[Task | object]] = []
    try:
        await sender.start()
        peer = sender.peer(json.loads(receiver.card_file.read_text()))
        texts = [f"request {i}" for i in range(REQUESTS)]
        calls = [asyncio.ensure_future(sender.send_message(peer, text)) for text in texts]
        for kill in range(KILLS):
            if kill % 2 == 0:  # a kill at a random time while the receiver serves
                await asyncio.sleep(rng.uniform(0.0, MAX_KILL_DELAY))
            else:  # a kill as a handler starts: its task recorded, its answer not sent
                seen = len(receiver.handling)
                await until(
                    lambda s=seen: len(receiver.handling) > s or all(c.done() for c in calls),
                    "a handler starting",
                    60,
                )
            await receiver.kill()
            await receiver.start()
        answers = await asyncio.wait_for(asyncio.gather(*calls), TIMEOUT)
        for text, answer in zip(texts, answers, strict=True):
            assert isinstance(answer, Task)
            assert answer.status.state is TaskState.COMPLETED
            assert answer.status.message is not None
            assert answer.status.message.parts[0].text == f"answer to {text}"
        # An answer reaches the sender before the receiver drops its "answer owed"
        # record: the last kill must come after that, or the record stays (and the
        # answer would be sent again at the next start, as it must).
        await until(lambda: not _left(receiver, "mailbox.answers"), "answers recorded sent", 60)
    finally:
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        await sender.stop()
        await sender_relay.close()
        await receiver.kill()
    # no second answer reached the sender
    assert not [r for r in caplog.records if "unknown request id" in r.getMessage()]
    # one task per request, each answered; nothing left to hand on or to answer
    store = SqliteStore.open(receiver.store, receiver.key)
    try:
        tasks = [
            from_json(Task, json.loads(store.get("a2a.tasks", key) or b"{}")["task"])
            for key in store.keys("a2a.tasks")
        ]
        assert sorted(t.history[0].parts[0].text for t in tasks) == sorted(texts)
        assert all(t.status.state is TaskState.COMPLETED for t in tasks)
        assert store.keys("mailbox.inbox") == []
        assert store.keys("mailbox.answers") == []
    finally:
        store.close()


def _left(receiver: _Receiver, namespace: str) -> list[str]:
    """The keys in ``namespace`` of the receiver's store, read while it runs."""
    store = SqliteStore.open(receiver.store, receiver.key)
    try:
        return store.keys(namespace)
    finally:
        store.close()
