"""Store throughput: puts, gets and transactions on SqliteStore (file, WAL,
synchronous=FULL), SqliteStore in memory and MemoryStore.

Run: ``cd /work/main && uv run python benchmarks/bench_store.py [--n 2000]``.
Puts to a file are bound by fsync (one per commit), so batch related writes in
one transaction.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sealwire.store import MemoryStore, SqliteStore, StateStore, StoreKey

VALUE = bytes(range(256)) * 4  # 1 KiB, the size of a ratchet session state


def rate(label: str, n: int, fn: Callable[[int], object]) -> None:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    elapsed = time.perf_counter() - start
    print(f"  {label:<28} {n / elapsed:>10,.0f} ops/s  {elapsed / n * 1e6:>8.1f} us/op")


def bench(name: str, store: StateStore, n: int) -> None:
    print(name)
    rate("put (1 KiB, own commit)", n, lambda i: store.put("bench", f"k{i}", VALUE))
    rate("get (1 KiB)", n, lambda i: store.get("bench", f"k{i}"))

    def txn10(i: int) -> None:
        with store.transaction() as txn:
            for j in range(10):
                txn.put("batch", f"k{i}-{j}", VALUE)

    rate("transaction of 10 puts", max(1, n // 10), txn10)
    rate("keys(prefix) over n keys", 20, lambda i: store.keys("bench", "k1"))
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    n = parser.parse_args().n
    key = StoreKey.generate()
    with tempfile.TemporaryDirectory() as tmp:
        bench("SqliteStore (file, WAL, FULL)", SqliteStore.open(Path(tmp) / "b.db", key), n)
    bench("SqliteStore (:memory:)", SqliteStore.open(":memory:", key), n)
    bench("MemoryStore", MemoryStore(), n)


if __name__ == "__main__":
    main()
