"""The relay's SQLite backend alone: CPU per message of a stream's commits (each
stores a batch and acknowledges the batch before it, as ``/v1/stream`` commits do,
with the WAL checkpointed by the backend's own worker), on a new file of the
backend's page size (the baseline) and of larger pages, alternated in the same run.

Large pages take large envelopes in fewer WAL frames; an envelope stored inline
in a leaf page instead makes every ack rewrite (and inserts split) that page.

Run: ``uv run python benchmarks/bench_relay_sqlite.py [--messages N] [--batch B]
[--page-sizes 8192,16384]``.
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

SIZES = (1024, 4096, 16384, 65536)
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


async def main_async(messages: int, batch: int, others: list[int]) -> None:
    ours = _sqlite_backend.PAGE_SIZE
    print(f"SQLite backend, commits of {batch} stored + {batch} acknowledged, median of {RUNS}:")
    print("CPU per message on pages of the backend's size, then of others (ratio to it)")
    print(f"{'envelope':>9}  {ours:>5} B pages" + "".join(f"  {p:>5} B pages" for p in others))
    for size in SIZES:
        runs: dict[int, list[float]] = {page: [] for page in (ours, *others)}
        for _ in range(RUNS):  # alternated: the machine's drift hits each alike
            for page, figures in runs.items():
                figures.append(await cpu_per_message(page, size, messages, batch))
        median = {page: sorted(figures)[RUNS // 2] for page, figures in runs.items()}
        base = median[ours]
        line = f"{size:>7} B  {base:>8.1f} us   "
        line += "".join(f"  {median[p]:>6.1f} us {median[p] / base:4.2f}" for p in others)
        print(line)
    _sqlite_backend.PAGE_SIZE = ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=16384)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--page-sizes", default="8192,16384", help="the others, comma-separated")
    args = parser.parse_args()
    others = [int(p) for p in args.page_sizes.split(",")]
    asyncio.run(main_async(args.messages, args.batch, others))


if __name__ == "__main__":
    main()
