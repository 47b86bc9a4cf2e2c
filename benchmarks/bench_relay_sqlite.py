"""The relay's SQLite backend alone: CPU per message of a stream's commits (each
stores a batch and acknowledges the batch before it, as ``/v1/stream`` commits do,
with the WAL checkpointed by the backend's own worker), on a new file of the
backend's page size beside one of 4 KiB pages (SQLite's default, the baseline),
in the same run.

Run: ``uv run python benchmarks/bench_relay_sqlite.py [--messages N] [--batch B]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from sealwire.relay import Delivery
from sealwire_relay import _sqlite_backend
from sealwire_relay._sqlite_backend import SqliteBackend

BASELINE_PAGE_SIZE = 4096
SIZES = (1024, 16384)
RUNS = 3


async def cpu_per_message(page_size: int, size: int, messages: int, batch: int) -> float:
    """Microseconds of this process's CPU per message stored and acknowledged."""
    _sqlite_backend.PAGE_SIZE = page_size  # read when a new file is made
    with tempfile.TemporaryDirectory() as tmp:
        backend = SqliteBackend(Path(tmp) / "relay.sqlite3")
        await backend.start()
        envelope = os.urandom(size)
        previous: list[tuple[str, Delivery]] = []
        start = time.process_time()
        for first in range(0, messages, batch):
            stored = [
                ("bob", Delivery(message_id=f"m{i}", sender="alice", envelope=envelope,
                                 received_at=time.time()))
                for i in range(first, first + batch)
            ]  # fmt: skip
            acks = [("bob", d.sender, d.message_id) for _, d in previous]
            await backend.commit_mailbox_batch(acks, stored, max_depth=10**9)
            previous = stored
            await asyncio.sleep(0)  # the checkpoint worker's turn, as in a serving relay
        used = time.process_time() - start
        await backend.close()
    return used * 1e6 / messages


async def main_async(messages: int, batch: int) -> None:
    ours = _sqlite_backend.PAGE_SIZE
    print(f"SQLite backend, commits of {batch} stored + {batch} acknowledged, median of {RUNS}")
    print(f"{'envelope':>9}  {BASELINE_PAGE_SIZE} B pages  {ours} B pages  ratio")
    for size in SIZES:
        base, new = [], []
        for _ in range(RUNS):  # alternated: the machine's drift hits both alike
            base.append(await cpu_per_message(BASELINE_PAGE_SIZE, size, messages, batch))
            new.append(await cpu_per_message(ours, size, messages, batch))
        b, n = sorted(base)[RUNS // 2], sorted(new)[RUNS // 2]
        print(f"{size:>7} B  {b:>9.1f} us  {n:>9.1f} us  {n / b:5.2f}")
    _sqlite_backend.PAGE_SIZE = ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=16384)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    asyncio.run(main_async(args.messages, args.batch))


if __name__ == "__main__":
    main()
