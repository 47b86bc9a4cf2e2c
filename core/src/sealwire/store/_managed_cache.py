"""The managed store's write-ahead cache on the host (a sealed SQLite store): the
snapshot of the last head read, with its blobs, and the journal of commits not yet
in the manager."""

from __future__ import annotations

import json
from collections.abc import Mapping

import attrs

from sealwire.store._manifest import Head, Key, b64, unb64
from sealwire.store._sqlite import SqliteStore

__all__ = ["HostCache", "JournalEntry", "Writes"]

_CACHE_NS = "cache"
_JOURNAL_NS = "journal"

Writes = dict[Key, bytes | None]
"""A commit's writes: a value, or None for a delete."""

JournalEntry = tuple[Writes, set[Key], set[Key]]
"""A journalled commit: its writes, the keys it read and the ranges it listed."""


@attrs.frozen
class HostCache:
    """The snapshot and the journal, kept in ``store``."""

    store: SqliteStore

    def snapshot(self) -> tuple[str | None, int, bytes, dict[str, bytes]]:
        """The cached head's version, generation, content and blobs (None: no snapshot)."""
        raw = self.store.get(_CACHE_NS, "snapshot")
        if raw is None:
            return None, 0, b"", {}
        record = json.loads(raw)
        blobs = {n: unb64(b) for n, b in record["blobs"].items()}
        return record["version"], int(record["generation"]), unb64(record["head"]), blobs

    def journal(self) -> list[tuple[str, JournalEntry]]:
        """The journalled commits, oldest first, each with the id of the journal."""
        found: list[tuple[str, JournalEntry]] = []
        for name in self.store.keys(_JOURNAL_NS):
            raw = self.store.get(_JOURNAL_NS, name)
            if raw is None:
                continue
            record = json.loads(raw)
            writes: Writes = {(ns, k): None if v is None else unb64(v) for ns, k, v in record["w"]}
            reads = {(ns, k) for ns, k in record["r"]}
            ranges = {(ns, p) for ns, p in record["p"]}
            found.append((str(record["id"]), (writes, reads, ranges)))
        return found

    def append(self, journal_id: str, entry: JournalEntry) -> None:
        """Journal one commit (durable on the host when this returns)."""
        writes, reads, ranges = entry
        seq = len(self.store.keys(_JOURNAL_NS)) + 1
        record = {
            "id": journal_id,
            "w": [[ns, k, None if v is None else b64(v)] for (ns, k), v in writes.items()],
            "r": [list(k) for k in sorted(reads)],
            "p": [list(k) for k in sorted(ranges)],
        }
        self.store.put(_JOURNAL_NS, f"{seq:012d}", json.dumps(record).encode())

    def save_snapshot(self, head: Head, blobs: Mapping[str, bytes], *, drop_journal: bool) -> None:
        """Make ``head`` the snapshot; ``drop_journal``: in the same local transaction,
        forget the journal (it is in ``head``)."""
        record = {
            "version": head.version,
            "generation": head.generation,
            "head": b64(head.content),
            "blobs": {n: b64(b) for n, b in blobs.items()},
        }
        with self.store.transaction() as txn:
            if drop_journal:
                for name in txn.keys(_JOURNAL_NS):
                    txn.delete(_JOURNAL_NS, name)
            txn.put(_CACHE_NS, "snapshot", json.dumps(record).encode())

    def close(self) -> None:
        self.store.close()
