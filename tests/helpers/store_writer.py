"""Writer process for the secrets-manager store tests (run by them, not by pytest).

``python store_writer.py crash BACKEND HOME OPTIONS_JSON SEED`` commits numbered
states forever (like tests/core/store_crash_writer.py) and prints each number
once the commit returned. ``python store_writer.py increment BACKEND HOME
OPTIONS_JSON N`` increments one counter N times, each a read-modify-write
transaction retried on StoreConflictError, and prints each value it committed.
BACKEND is aws, vault or gcp (the ``[agent.store]`` options as JSON); the store key
is in $SEALWIRE_STORE_KEY.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

from sealwire.store import StateStore, StoreConflictError, StoreKey

NS = "crash"


def payload(n: int, size: int) -> bytes:
    seed = hashlib.sha256(str(n).encode()).digest()
    return (seed * (size // 32 + 1))[:size]


def crash(store: StateStore, seed: int) -> None:
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


def increment(store: StateStore, times: int) -> None:
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


def open_store(backend: str, home: Path, options: dict[str, str]) -> StateStore:
    if backend == "aws":
        from sealwire_store_aws import open_aws_store

        return open_aws_store(options, StoreKey.from_env(), home)
    if backend == "gcp":
        from sealwire_store_gcp import open_gcp_store

        return open_gcp_store(options, StoreKey.from_env(), home)
    from sealwire_store_vault import open_vault_store

    return open_vault_store(options, StoreKey.from_env(), home)


def main() -> None:
    mode, backend, home, options, arg = sys.argv[1:6]
    store = open_store(backend, Path(home), json.loads(options))
    try:
        if mode == "crash":
            crash(store, int(arg))
        else:
            increment(store, int(arg))
    finally:
        store.close()


if __name__ == "__main__":
    main()
