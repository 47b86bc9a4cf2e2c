"""A receiving agent in a process of its own, killed with SIGKILL and started again
while it serves (the SIGKILL tests of the mailbox and group paths), and what those
tests check of its store afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from waiting import until

from sealwire.codec import from_json
from sealwire.model import Task, TaskState
from sealwire.store import SqliteStore, StoreKey

SCRIPT = Path(__file__).with_name("crash_agent.py")
MAX_KILL_DELAY = 0.6
"""A kill by time lands this long at most after the receiver is ready: while it serves."""


class CrashingReceiver:
    """The receiving agent's process: started, killed with SIGKILL, started again.

    Its handler takes up to ``handler_seconds``, so that kills land between receiving
    a request, recording its task, handling it and sending the answer.
    """

    def __init__(self, directory: Path, relay_url: str, *, handler_seconds: float) -> None:
        self.handler_seconds = handler_seconds
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
            str(self.runs), str(self.handler_seconds), stdout=asyncio.subprocess.PIPE, env=env,
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

    async def kill_while_serving(
        self, kills: int, rng: random.Random, calls: Sequence[asyncio.Future[object]]
    ) -> None:
        """Kill and start again ``kills`` times while ``calls`` to it are under way:
        half the kills at a random time, half as a handler starts (its task recorded,
        its answer not sent)."""
        for kill in range(kills):
            if kill % 2 == 0:
                await asyncio.sleep(rng.uniform(0.0, MAX_KILL_DELAY))
            else:
                seen = len(self.handling)
                await until(
                    lambda s=seen: len(self.handling) > s or all(c.done() for c in calls),
                    "a handler starting",
                    60,
                )
            await self.kill()
            await self.start()


def keys_left(receiver: CrashingReceiver, namespace: str) -> list[str]:
    """The keys in ``namespace`` of the receiver's store, read while it runs."""
    store = SqliteStore.open(receiver.store, receiver.key)
    try:
        return store.keys(namespace)
    finally:
        store.close()


def stored_tasks(receiver: CrashingReceiver) -> list[Task]:
    """The tasks in the (stopped) receiver's store."""
    store = SqliteStore.open(receiver.store, receiver.key)
    try:
        return [
            from_json(Task, json.loads(store.get("a2a.tasks", key) or b"{}")["task"])
            for key in store.keys("a2a.tasks")
        ]
    finally:
        store.close()


def assert_each_served_once(receiver: CrashingReceiver, texts: Sequence[str], router: str) -> None:
    """The (stopped) receiver holds one completed task per request text, and its
    ``router`` (``mailbox`` or ``group``) has nothing left to hand on or to answer."""
    tasks = stored_tasks(receiver)
    assert sorted(t.history[0].parts[0].text for t in tasks) == sorted(texts)
    assert all(t.status.state is TaskState.COMPLETED for t in tasks)
    assert keys_left(receiver, f"{router}.inbox") == []
    assert keys_left(receiver, f"{router}.answers") == []
