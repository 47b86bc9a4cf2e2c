"""The SQLite backend's WAL is checkpointed by a worker thread, not by its commits on
the event loop: the WAL stays bounded under steady writes, a failing checkpoint is
logged and tried again while the relay goes on, and a relay killed between
checkpoints loses nothing it committed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from waiting import until

from sealwire.relay import Delivery
from sealwire_relay import _sqlite_checkpoints
from sealwire_relay._sqlite_backend import SqliteBackend
from sealwire_relay._sqlite_checkpoints import WalCheckpointer

ENVELOPE = os.urandom(4096)
BATCH = 50


def _deliveries(start: int, n: int) -> list[tuple[str, Delivery]]:
    return [
        ("box", Delivery(message_id=f"m{i}", sender="sw1s", envelope=ENVELOPE, received_at=1.0))
        for i in range(start, start + n)
    ]


def _wal_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


async def _store(backend: SqliteBackend, batches: int) -> None:
    for k in range(batches):
        _, stored = await backend.commit_mailbox_batch(
            [], _deliveries(k * BATCH, BATCH), max_depth=10**6
        )
        assert stored == [True] * BATCH
        await asyncio.sleep(0)  # the loop turns, but is never idle (a relay under load)


async def test_the_wal_stays_bounded_by_checkpoints_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite_checkpoints, "CHECKPOINT_DELAY_SECONDS", 0.01)
    path = tmp_path / "relay.sqlite3"
    backend = SqliteBackend(path)
    await backend.start()
    try:
        await _store(backend, 200)  # 10,000 messages, 40 MiB of envelopes, no idle turn
        written = 200 * BATCH * len(ENVELOPE)
        # The WAL starts over once it passed RESET_AFTER_BYTES and the writer finished
        # the worker's checkpoint: its file stays far below what was written (without
        # that, a checkpoint beside a busy writer never lets it start over).
        assert _wal_bytes(path) < written * 3 / 4  # about 12 MiB here; 57 MiB without
        assert backend_checkpoints(backend) > 0  # by the worker
        with contextlib.closing(sqlite3.connect(path)) as other:
            assert other.execute("SELECT count(*) FROM messages").fetchone()[0] == 200 * BATCH
    finally:
        await backend.close()
    assert _wal_bytes(path) == 0  # the last connection's close checkpoints and removes it


async def test_a_failing_checkpoint_is_logged_retried_and_the_writes_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_sqlite_checkpoints, "CHECKPOINT_DELAY_SECONDS", 0.01)
    monkeypatch.setattr(_sqlite_checkpoints, "RETRY_FIRST_SECONDS", 0.01)
    real = WalCheckpointer._checkpoint
    failures = iter([True, True])

    def flaky(self: WalCheckpointer) -> None:
        if next(failures, False):
            raise sqlite3.OperationalError("disk I/O error")
        real(self)

    monkeypatch.setattr(WalCheckpointer, "_checkpoint", flaky)
    path = tmp_path / "relay.sqlite3"
    backend = SqliteBackend(path)
    await backend.start()
    try:
        with caplog.at_level(logging.WARNING, logger="sealwire.relay"):
            await _store(backend, 20)
            await until(lambda: backend_checkpoints(backend) > 0, "a checkpoint after the failures")
        failed = [r for r in caplog.records if "checkpoint failed" in r.getMessage()]
        assert len(failed) == 2 and "disk I/O error" in failed[0].getMessage()
    finally:
        await backend.close()


def backend_checkpoints(backend: SqliteBackend) -> int:
    checkpoints = backend._checkpoints
    return 0 if checkpoints is None else checkpoints.checkpoints


WRITER = textwrap.dedent(
    """
    import asyncio, os, sys
    from sealwire.relay import Delivery
    from sealwire_relay._sqlite_backend import SqliteBackend

    async def main():
        backend = SqliteBackend(sys.argv[1])
        await backend.start()
        envelope = os.urandom(4096)
        for k in range(10**6):
            batch = [("box", Delivery(message_id=f"m{k}-{i}", sender="sw1s",
                                      envelope=envelope, received_at=1.0)) for i in range(20)]
            await backend.commit_mailbox_batch([], batch, max_depth=10**9)
            print(k, flush=True)  # batch k is committed
            await asyncio.sleep(0)

    asyncio.run(main())
    """
)


def test_a_relay_killed_between_checkpoints_keeps_every_commit(tmp_path: Path) -> None:
    path = tmp_path / "relay.sqlite3"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    committed = -1
    for line in writer.stdout:
        committed = int(line)
        if committed >= 300:  # many checkpoints in, more commits since the last
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    writer.stdout.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        count = db.execute("SELECT count(*) FROM messages").fetchone()[0]
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert count >= (committed + 1) * 20
