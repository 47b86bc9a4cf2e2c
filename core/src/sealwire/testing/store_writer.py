"""Writer process for :class:`~sealwire.testing.managed_store_contract.ManagedStoreContract`
(run by the suite as ``python -m sealwire.testing.store_writer``, not by pytest).

``python -m sealwire.testing.store_writer crash OPENER HOME OPTIONS_JSON SEED`` commits
numbered states forever and prints each number once its commit returned.
``... increment OPENER HOME OPTIONS_JSON N`` increments one counter N times, each a
read-modify-write transaction run again on :class:`~sealwire.store.StoreConflictError`,
and prints each value it committed.

OPENER names the store's open function as ``module:function``, called as
``function(options, key, home)`` (the shape of ``open_aws_store`` and the scaffold's
opener); OPTIONS_JSON is its ``[agent.store]`` options; the store key is in
``$SEALWIRE_STORE_KEY``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import random
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import cast

from sealwire.store import StateStore, StoreConflictError, StoreKey

__all__ = ["NS", "Opener", "load_opener", "main", "payload"]

NS = "crash"
"""The namespace the crash writer commits into (the suite checks it after a kill)."""

HISTORY_KEPT = 3
"""History entries a crash commit keeps: each commit adds one and deletes the oldest,
so a transaction seen in part shows as a wrong set of keys."""

SMALL_PAYLOAD = 900
"""Bytes under which a payload stays inline in the head (below ``INLINE_MAX``)."""
LARGE_PAYLOAD = 3000
"""Bytes up to which a payload may go: past ``INLINE_MAX``, so some commits write a blob."""

Opener = Callable[[Mapping[str, str], StoreKey, Path], StateStore]


def load_opener(path: str) -> Opener:
    """The function ``module:function`` names."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"an opener is module:function, not {path!r}")
    return cast(Opener, getattr(importlib.import_module(module), name))


def payload(n: int, size: int) -> bytes:
    """Deterministic bytes for commit ``n`` (the digest stored beside it checks them)."""
    seed = hashlib.sha256(str(n).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def crash(store: StateStore, seed: int) -> None:
    rng = random.Random(seed)
    raw = store.get(NS, "counter")
    n = int(raw) if raw is not None else 0
    while True:
        n += 1
        size = rng.choice([rng.randrange(1, SMALL_PAYLOAD), rng.randrange(1, LARGE_PAYLOAD)])
        blob = payload(n, size)
        with store.transaction() as txn:
            txn.put(NS, "state/a", f"{n}".encode())
            txn.put(NS, "state/blob", blob)
            txn.put(NS, "state/digest", hashlib.sha256(blob).hexdigest().encode())
            txn.put(NS, f"history/{n:08d}", hashlib.sha256(str(n).encode()).digest())
            if n > HISTORY_KEPT:
                txn.delete(NS, f"history/{n - HISTORY_KEPT:08d}")
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


def main(argv: list[str] | None = None) -> None:
    mode, opener, home, options, arg = (sys.argv[1:] if argv is None else argv)[:5]
    store = load_opener(opener)(json.loads(options), StoreKey.from_env(), Path(home))
    try:
        if mode == "crash":
            crash(store, int(arg))
        else:
            increment(store, int(arg))
    finally:
        store.close()


if __name__ == "__main__":
    main()
