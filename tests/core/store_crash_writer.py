"""Writer process for the SIGKILL crash test (run by test_store_crash.py, not by pytest).

Usage: ``python store_crash_writer.py PATH SEED`` with the key in
$SEALWIRE_STORE_KEY. It continues from the committed counter and commits state
after state forever; each transaction writes several related keys (see
``expected_state`` in the test) and prints the number once COMMIT returned.
"""

from __future__ import annotations

import hashlib
import random
import sys

from sealwire.store import SqliteStore, StoreKey

NS = "crash"


def payload(n: int, size: int) -> bytes:
    seed = hashlib.sha256(str(n).encode()).digest()
    return (seed * (size // 32 + 1))[:size]


def main() -> None:
    path, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    store = SqliteStore.open(path, StoreKey.from_env())
    raw = store.get(NS, "counter")
    n = int(raw) if raw is not None else 0
    while True:
        n += 1
        blob = payload(n, rng.randrange(1, 64 * 1024))
        with store.transaction() as txn:
            txn.put(NS, "state/a", f"{n}".encode())
            txn.put(NS, "state/blob", blob)
            txn.put(NS, "state/digest", hashlib.sha256(blob).hexdigest().encode())
            txn.put(NS, f"history/{n:08d}", hashlib.sha256(str(n).encode()).digest())
            if n > 3:  # keep the history short: drop an old entry in the same transaction
                txn.delete(NS, f"history/{n - 3:08d}")
            txn.put(NS, "counter", f"{n}".encode())
        print(n, flush=True)


if __name__ == "__main__":
    main()
