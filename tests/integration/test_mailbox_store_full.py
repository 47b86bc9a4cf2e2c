"""Issue item 15.6: a local store error never acknowledges a delivery.

The receiving agent's store fails while it keeps an opened request: first for
real (a SQLite store on a tmpfs of a few MiB, filled up: "database or disk is
full"; needs root to mount, skipped otherwise), then through a store whose
transactions raise the real ``sqlite3.OperationalError`` on demand. Either way
the delivery is not acknowledged (the relay still holds it), the agent reports
``mailbox.store`` unhealthy, the sender's call waits, and once space returns
the relay delivers it again and the call is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from waiting import until

from sealwire.agent import Agent, TaskContext
from sealwire.identity import TRUST_NAMESPACE, Identity
from sealwire.model import Task, TaskState
from sealwire.relay import RelayClient
from sealwire.store import MemoryStore, SqliteStore, StateStore, StoreKey, StoreTransaction

TIMEOUT = 60
"""Seconds for the answer once space returns (the router retries at most every 5 s)."""
TMPFS_SIZE = "4m"
"""Room for the receiver's store with its prekeys; the rest is filled up."""
FILL_CHUNK = 4096
"""tmpfs allocates by pages: filling page by page leaves no room at all."""


async def _handler(task: TaskContext) -> None:
    await task.complete(f"answer to {task.message.parts[0].text}")


@contextlib.contextmanager
def _tmpfs(where: Path) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()[:200]}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def _fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last page; the filler's path."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * FILL_CHUNK)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


class _FailingStore:
    """A real SqliteStore whose transactions fail, while ``full`` is set, as SQLite does
    on a full disk (the real ``sqlite3.OperationalError``)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.full = False
        self.fail_transaction = 0
        """When set to n, the n-th transaction from now fails (once)."""
        self.fail_trust_read: int | None = None
        """When set to n, the first read of the trust store after n more transactions
        fails (once)."""

    def get(self, namespace: str, key: str) -> bytes | None:
        if namespace == TRUST_NAMESPACE and self.fail_trust_read == 0:
            self.fail_trust_read = None
            raise sqlite3.OperationalError("database or disk is full")
        return self._store.get(namespace, key)

    def put(self, namespace: str, key: str, value: bytes) -> None:
        self._check()
        self._store.put(namespace, key, value)

    def delete(self, namespace: str, key: str) -> bool:
        self._check()
        return self._store.delete(namespace, key)

    def keys(self, namespace: str, prefix: str = "") -> list[str]:
        return self._store.keys(namespace, prefix)

    def transaction(self) -> AbstractContextManager[StoreTransaction]:
        self._check()
        if self.fail_trust_read:
            self.fail_trust_read -= 1
        if self.fail_transaction:
            self.fail_transaction -= 1
            if not self.fail_transaction:
                raise sqlite3.OperationalError("database or disk is full")
        return self._store.transaction()

    def close(self) -> None:
        self._store.close()

    def _check(self) -> None:
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")


def _agent(identity: Identity, store: StateStore, relay: RelayClient, name: str) -> Agent:
    return Agent(identity, store, name=name, relay=relay)


async def _store_fails_then_recovers(
    sqlite_relay_url: str,
    store: StateStore,
    caplog: pytest.LogCaptureFixture,
    fail: object,
    recover: object,
) -> None:
    caplog.set_level(logging.INFO, logger="sealwire.agent._mailbox")
    ids = {name: Identity.generate() for name in ("sender", "receiver")}
    relays = {name: RelayClient(sqlite_relay_url, identity) for name, identity in ids.items()}
    stores: dict[str, StateStore] = {"sender": MemoryStore(), "receiver": store}
    agents = {name: _agent(ids[name], stores[name], relays[name], name) for name in ids}
    agents["receiver"].on_message(_handler)
    call: asyncio.Future[object] | None = None
    try:
        for agent in agents.values():
            await agent.start()
        sender, receiver = agents["sender"], agents["receiver"]
        peer = sender.peer(receiver.card)
        first = await asyncio.wait_for(sender.send_message(peer, "warm up"), TIMEOUT)
        assert isinstance(first, Task)
        caplog.clear()
        assert callable(fail) and callable(recover)
        fail()
        call = asyncio.ensure_future(sender.send_message(peer, "while full"))
        await until(
            lambda: any("mailbox message" in r.getMessage() for r in caplog.records),
            "the receiver to fail keeping the request",
        )
        held = await relays["receiver"].fetch()
        assert len(held) == 1  # not acknowledged: the relay keeps it
        assert "mailbox.store" in receiver.health()
        assert not call.done()
        recover()
        task = await asyncio.wait_for(call, TIMEOUT)
        assert isinstance(task, Task) and task.status.state is TaskState.COMPLETED
        assert task.status.message is not None
        assert task.status.message.parts[0].text == "answer to while full"
        assert receiver.health() == {}
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        if call is not None:
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
        for agent in agents.values():
            await agent.stop()
        for relay in relays.values():
            await relay.close()


async def test_disk_full_while_keeping_is_not_acknowledged(
    tmp_path: Path, sqlite_relay_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with _tmpfs(tmp_path / "small") as small:
        store = SqliteStore.open(small / "receiver.db", StoreKey.generate())
        fillers: list[Path] = []
        try:
            await _store_fails_then_recovers(
                sqlite_relay_url,
                store,
                caplog,
                fail=lambda: fillers.append(_fill(small)),
                recover=lambda: fillers.pop().unlink(),
            )
        finally:
            store.close()


async def test_sqlite_full_error_while_keeping_is_not_acknowledged(
    tmp_path: Path, sqlite_relay_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = _FailingStore(SqliteStore.open(tmp_path / "receiver.db", StoreKey.generate()))

    def fail() -> None:
        store.full = True

    def recover() -> None:
        store.full = False

    try:
        await _store_fails_then_recovers(sqlite_relay_url, store, caplog, fail, recover)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("failing", "problem"),
    [("trust", "cannot route"), ("transaction", "cannot record")],
    ids=["checking-the-sender", "recording-the-task"],
)
async def test_store_error_after_keeping_hands_the_request_on_again(
    tmp_path: Path, sqlite_relay_url: str, failing: str, problem: str
) -> None:
    """The request is kept (its envelope opened and acknowledged) but a later
    step fails: the trust store's check of the sender (a read, after the keeping
    transaction) or the transaction that records its task (the 2nd). It stays in the
    inbox, the agent reports it, and it is handed on again: answered once, one task."""
    store = _FailingStore(SqliteStore.open(tmp_path / "receiver.db", StoreKey.generate()))
    ids = {name: Identity.generate() for name in ("sender", "receiver")}
    relays = {name: RelayClient(sqlite_relay_url, identity) for name, identity in ids.items()}
    sender = _agent(ids["sender"], MemoryStore(), relays["sender"], "sender")
    receiver = _agent(ids["receiver"], store, relays["receiver"], "receiver")
    receiver.on_message(_handler)
    try:
        await sender.start()
        await receiver.start()
        peer = sender.peer(receiver.card)
        await asyncio.wait_for(sender.send_message(peer, "warm up"), TIMEOUT)
        reports: list[str] = []
        report = receiver.report_health

        def spy(component: str, problem: str | None) -> None:
            if problem is not None:
                reports.append(f"{component}: {problem}")
            report(component, problem)

        receiver.report_health = spy  # type: ignore[method-assign]
        if failing == "trust":
            store.fail_trust_read = 1
        else:
            store.fail_transaction = 2
        task = await asyncio.wait_for(sender.send_message(peer, "again"), TIMEOUT)
        assert isinstance(task, Task) and task.status.message is not None
        assert task.status.message.parts[0].text == "answer to again"
        assert reports == [f"mailbox.store: {problem}: OperationalError: database or disk is full"]
        assert store.fail_transaction == 0 and store.fail_trust_read is None
        assert len(store.keys("a2a.tasks")) == 2  # warm up, again: no second task
        assert store.keys("mailbox.inbox") == store.keys("mailbox.answers") == []
        assert receiver.health() == {}
    finally:
        for agent in (sender, receiver):
            await agent.stop()
        for relay in relays.values():
            await relay.close()
