"""Writer process for the AWS store tests (run by test_aws_store.py, not by pytest).

``python aws_writer.py crash HOME ENDPOINT PREFIX SEED [MAX_UNFLUSHED]`` commits
numbered states forever (like tests/core/store_crash_writer.py) and prints each
number once the commit returned. ``python aws_writer.py increment HOME ENDPOINT
PREFIX N`` increments one counter N times, each a read-modify-write
transaction retried on StoreConflictError, and prints each value it committed.
The store key is in $SEALWIRE_STORE_KEY.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

from sealwire.store import StoreConflictError, StoreKey
from sealwire_store_aws import open_aws_store

NS = "crash"


def payload(n: int, size: int) -> bytes:
    seed = hashlib.sha256(str(n).encode()).digest()
    return (seed * (size // 32 + 1))[:size]


def crash(store, seed: int) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    raw = store.get(NS, "counter")
    n = int(raw) if raw is not None else 0
    while True:
        n += 1
        blob = payload(n, rng.choice([rng.randrange(1, 900), rng.randrange(1, 3000)]))
        with store.transaction() as txn:
            txn.put(NS, "state/a", f"{n}".encode())
            txn.put(NS, "state/blob", blob)
            txn.put(NS, "state/digest", hashlib.sha256(blob).hexdigest().encode())
            txn.put(NS, f"history/{n:08d}", hashlib.sha256(str(n).encode()).digest())
            if n > 3:
                txn.delete(NS, f"history/{n - 3:08d}")
            txn.put(NS, "counter", f"{n}".encode())
        print(n, flush=True)


def increment(store, times: int) -> None:  # type: ignore[no-untyped-def]
    done = 0
    while done < times:
        try:
            with store.transaction() as txn:
                value = int(txn.get("ns", "counter") or b"0") + 1
                txn.put("ns", "counter", str(value).encode())
        except StoreConflictError:
            continue  # the store read the newer state: run the step again on it
        done += 1
        print(value, flush=True)


def main() -> None:
    mode, home, endpoint, prefix, arg = sys.argv[1:6]
    options = {
        "prefix": prefix,
        "region": "us-east-1",
        "endpoint_url": endpoint,
        "retry_backoff": "0.01",
    }
    if len(sys.argv) > 6:
        options["max_unflushed"] = sys.argv[6]
    store = open_aws_store(options, StoreKey.from_env(), Path(home))
    try:
        if mode == "crash":
            crash(store, int(arg))
        else:
            increment(store, int(arg))
    finally:
        store.close()


if __name__ == "__main__":
    main()
