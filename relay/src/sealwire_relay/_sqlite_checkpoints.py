"""WAL checkpoints of the SQLite backend, mostly off the event loop.

SQLite checkpoints a WAL file by itself inside the commit that takes it past
``wal_autocheckpoint`` pages: that commit copies the WAL's pages into the
database file and syncs it, on the relay's event loop (a fifth of the relay's
time per message under load). The backend turns that off and a
:class:`WalCheckpointer` runs PASSIVE checkpoints instead, on a connection of its
own in a worker thread, shortly after commits: a passive checkpoint neither waits
for the writer nor blocks it.

A checkpoint running beside the writer never catches up with it, though, and
SQLite writes the WAL from its start again only after a checkpoint that left no
frame behind. So once the WAL holds :data:`RESET_AFTER_BYTES` of pages, the writer
checkpoints the frames written since the worker's last pass itself, after its
next commit (a few, the worker copied the rest): the commit after that starts
the WAL over, which keeps its file about as large as SQLite's own default would.
Durability is unchanged: a commit is in the WAL before it is answered,
checkpointed or not.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading

__all__ = ["WalCheckpointer"]

log = logging.getLogger("sealwire.relay")

# After a commit, the worker waits this long (commits meanwhile join the same
# checkpoint), then checkpoints what the WAL holds.
CHECKPOINT_DELAY_SECONDS = 0.05
# The WAL's pages past which the writer finishes a checkpoint so that the WAL
# starts over: SQLite's own wal_autocheckpoint default (1,000 pages of 4 KiB).
RESET_AFTER_BYTES = 4_096_000
# A failed checkpoint is tried again after a delay doubling from the first to the last.
RETRY_FIRST_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0


class WalCheckpointer:
    """Checkpoints the WAL of the database at ``path`` (of pages of ``page_size`` bytes)
    after commits (see the module)."""

    def __init__(self, path: str, page_size: int) -> None:
        self._path = path
        self._reset_after_frames = max(1, RESET_AFTER_BYTES // page_size)
        self._db: sqlite3.Connection | None = None  # used only in the worker thread
        self._lock = threading.Lock()
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reset_due = False
        self._reset_done = asyncio.Event()
        self.checkpoints = 0
        """Checkpoints the worker completed."""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sealwire-relay-checkpoints")

    def committed(self, db: sqlite3.Connection) -> None:
        """A transaction was committed on the writer's connection ``db``: checkpoint
        soon, and finish here a checkpoint that lets the WAL start over when due."""
        self._dirty.set()
        if not self._reset_due:
            return
        try:  # the transaction is committed whatever happens here: never raise
            busy, frames, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            log.warning("relay SQLite checkpoint failed (%s: %s)", type(exc).__name__, exc)
            return
        if not busy and frames == done:
            self._reset_due = False
            self._reset_done.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.to_thread(self._close_connection)  # after a checkpoint under way

    async def _run(self) -> None:
        """Checkpoint after commits for as long as the backend runs; a failure (a locked
        or damaged file, a bug) is logged and tried again, never ends the task."""
        delay = RETRY_FIRST_SECONDS
        while True:
            await self._dirty.wait()
            await asyncio.sleep(CHECKPOINT_DELAY_SECONDS)
            self._dirty.clear()
            try:
                frames = await asyncio.to_thread(self._checkpoint)
            except Exception as exc:
                log.warning(
                    "relay SQLite checkpoint failed (%s: %s); again in %.1f s",
                    type(exc).__name__, exc, delay,
                )  # fmt: skip
                self._dirty.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
            else:
                delay = RETRY_FIRST_SECONDS
                self.checkpoints += 1
                if frames >= self._reset_after_frames:
                    # The writer finishes it; a pass of ours meanwhile would hold the
                    # checkpoint lock it needs.
                    self._reset_done.clear()
                    self._reset_due = True
                    await self._reset_done.wait()

    def _checkpoint(self) -> int:
        """A passive checkpoint; the frames the WAL holds."""
        with self._lock:
            if self._db is None:
                self._db = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False
                )
            try:
                _, frames, _ = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except BaseException:
                self._db.close()  # the next try starts from a fresh connection
                self._db = None
                raise
            return int(frames)

    def _close_connection(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
