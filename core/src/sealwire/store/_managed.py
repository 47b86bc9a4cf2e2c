"""A state store kept in a secrets manager: one head committed by compare-and-set.

Shared by the store plugins (``sealwire-store-aws``, ``-vault``, ``-gcp``): each
brings a :class:`SecretsBackend` for its manager; this engine does the rest.

Rules of this file (sans-I/O: the manager is a :class:`SecretsBackend`):

* Layout. The whole state of an agent is one *manifest* (every namespace, key
  and value), sealed with AES-256-GCM under the store key and written as the
  *head* secret. A value longer than :data:`INLINE_MAX` is sealed on its own
  (bound to its namespace and key) and written as content-addressed *blob*
  secrets of at most :data:`CHUNK_MAX` bytes; the manifest names them. A
  manifest too long for one secret is itself written as blobs and the head
  names them.
* Atomicity. A transaction is one new head: all of its writes land or none.
* Concurrency. A head is written with the manager's compare-and-set against
  the version this handle read. A lost race is detected (never overwritten):
  the current head is read, and if no key this transaction read or wrote (nor
  a range it listed) changed, the writes are replayed on the current head and
  the compare-and-set retried, at most :data:`MAX_REBASES` times; otherwise
  :class:`StoreConflictError` and nothing is committed. Two processes on one
  agent therefore cannot both advance the same ratchet.
* Freshness. The manifest carries a generation; a head older than one this
  host saw (rolled back behind the agent's back) is refused.
* Write-ahead cache. A local SQLite file (sealed like every SQLite store)
  keeps the last head read (so opening costs one call, not one per blob) and,
  when ``max_unflushed`` > 0, a journal of commits not yet in the manager:
  such a commit is durable on the host when it returns and is flushed in a
  batch once more than ``max_unflushed`` wait (and on :meth:`flush` and
  :meth:`close`). A lost host loses at most ``max_unflushed`` commits; the
  default 0 is write-through (a commit returns once the manager holds it).
* A crash between the head write and its acknowledgement leaves either the
  old head (the commit never returned: nothing was handed on) or the new one.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Self

from sealwire.errors import AuthenticationError, StateError
from sealwire.store._base import (
    StoreConflictError,
    StoreError,
    StoreTransaction,
    check_name,
    check_prefix,
    check_value,
)
from sealwire.store._keys import StoreKey
from sealwire.store._managed_cache import HostCache, JournalEntry, Writes
from sealwire.store._manifest import (
    EMPTY_HEAD,
    INLINE_MAX,
    Head,
    Key,
    ManifestSeal,
    blob_name,
    changed_keys,
    chunks_of,
    conflicts,
)
from sealwire.store._secrets import CallCounter, LostRace, SecretsBackend
from sealwire.store._sqlite import SqliteStore
from sealwire.store._sqlite import seal as seal_value

__all__ = ["MAX_REBASES", "ManagedStore"]

log = logging.getLogger("sealwire.store.managed")

MAX_REBASES = 8
"""Lost races one commit retries on a newer head before giving up with a conflict:
enough for a few writers on disjoint keys, a bound against a livelock."""


class _Txn:
    """The :class:`StoreTransaction` of :meth:`ManagedStore.transaction`: staged writes
    over the store's view, with what it read (for the conflict check)."""

    def __init__(self, store: ManagedStore) -> None:
        self._store = store
        self.writes: dict[Key, bytes | None] = {}
        self.reads: set[Key] = set()
        self.ranges: set[Key] = set()
        self.active = True

    def _check(self) -> None:
        if not self.active:
            raise StateError("the transaction is over")

    def get(self, namespace: str, key: str) -> bytes | None:
        with self._store._lock:
            self._check()
            k = (check_name(namespace, "namespace"), check_name(key, "key"))
            if k in self.writes:
                return self.writes[k]
            self.reads.add(k)
            return self._store._view(k)

    def put(self, namespace: str, key: str, value: bytes) -> None:
        with self._store._lock:
            self._check()
            k = (check_name(namespace, "namespace"), check_name(key, "key"))
            self.writes[k] = check_value(value)

    def delete(self, namespace: str, key: str) -> bool:
        existed = self.get(namespace, key) is not None
        with self._store._lock:
            self.writes[(namespace, key)] = None
        return existed

    def keys(self, namespace: str, prefix: str = "") -> list[str]:
        with self._store._lock:
            self._check()
            check_name(namespace, "namespace")
            check_prefix(prefix)
            self.ranges.add((namespace, prefix))
            found = set(self._store._keys(namespace, prefix))
            for (ns, key), value in self.writes.items():
                if ns == namespace and key.startswith(prefix):
                    if value is None:
                        found.discard(key)
                    else:
                        found.add(key)
            return sorted(found)


class ManagedStore:
    """A :class:`~sealwire.store.StateStore` in a secrets manager (see the module rules)."""

    def __init__(
        self,
        backend: SecretsBackend,
        key: StoreKey,
        *,
        label: str,
        cache: SqliteStore,
        max_unflushed: int = 0,
        counter: CallCounter | None = None,
    ) -> None:
        """Use :meth:`open`."""
        self._backend = backend
        self._key = key
        self._label = label
        self._seal = ManifestSeal(key, label)
        self._cache = HostCache(cache)
        self._max_unflushed = max_unflushed
        self.counter = counter or CallCounter()
        self._lock = threading.RLock()
        self._txn_owner: int | None = None
        self._closed = False
        self._failed: StoreError | None = None
        self._head = EMPTY_HEAD
        self._overlay: Writes = {}
        self._journal: list[JournalEntry] = []
        self._blob_cache: dict[str, bytes] = {}
        self._journal_id = ""

    @classmethod
    def open(
        cls,
        backend: SecretsBackend,
        key: StoreKey,
        *,
        label: str,
        cache: SqliteStore,
        max_unflushed: int = 0,
        counter: CallCounter | None = None,
    ) -> ManagedStore:
        """Read the head (one call when the cache holds it), replay and flush a journal
        a crash left behind. :raises StoreConflictError: the head is older than one
        this host saw, or the journal conflicts with the head."""
        if max_unflushed < 0:
            raise StoreError("max_unflushed must be 0 (write-through) or more")
        store = cls(
            backend, key, label=label, cache=cache, max_unflushed=max_unflushed, counter=counter
        )
        try:
            store._load_snapshot()
            store._load_journal()
            if store._journal:  # a crash left commits on this host: send them first
                store.flush()
            else:
                store._refresh()
        except BaseException:
            cache.close()
            backend.close()
            raise
        return store

    # -- reading and committing -----------------------------------------------------------

    def _decode(self, version: str, content: bytes) -> Head:
        """The head ``content``; blobs come from the blob cache or the manager (and join it)."""
        return self._seal.decode(
            version, content, functools.partial(self._read_blob, known=self._blob_cache)
        )

    def _read_blob(self, name: str, known: dict[str, bytes]) -> bytes:
        if name in known:
            return known[name]
        content = self._backend.read_blob(name)
        if blob_name(content) != name:
            raise AuthenticationError("a blob in the manager does not match its name")
        known[name] = content
        return content

    def _load_journal(self) -> None:
        for journal_id, entry in self._cache.journal():
            self._journal_id = self._journal_id or journal_id
            self._journal.append(entry)
            self._overlay.update(entry[0])

    def _load_snapshot(self) -> None:
        """Start from the head the cache holds (no call: its blobs are cached too)."""
        version, _generation, content, blobs = self._cache.snapshot()
        self._blob_cache = dict(blobs)
        if version is not None:
            self._head = self._decode(version, content)

    def _refresh(self) -> set[Key]:
        """Adopt the manager's current head; the keys that changed since ours."""
        current = self._backend.read_head()
        if current is None:
            head = EMPTY_HEAD
        elif current[0] == self._head.version:
            return set()
        else:
            head = self._decode(current[0], current[1])
        if head.generation < self._head.generation:
            raise StoreConflictError(
                f"the manager's state (generation {head.generation}) is older than one this "
                f"host saw ({self._head.generation}): rolled back behind the agent's back; "
                "restore the newest version before going on"
            )
        changed = changed_keys(self._head, head)
        self._adopt(head)
        return changed

    def _adopt(self, head: Head, *, flushed: bool = False) -> None:
        """Make ``head`` this handle's view and, unless a journal waits (the snapshot is
        its base then), the cache's snapshot. ``flushed``: the journal is in ``head``;
        it is dropped in the same local transaction as the snapshot is written."""
        self._head = head
        wanted = head.blobs()
        self._blob_cache = {n: b for n, b in self._blob_cache.items() if n in wanted}
        if self._journal and not flushed:
            return
        self._cache.save_snapshot(head, self._blob_cache, drop_journal=flushed)
        if flushed:
            self._journal = []
            self._overlay = {}

    def _view(self, k: Key) -> bytes | None:
        if k in self._overlay:
            return self._overlay[k]
        return self._head.values.get(k)

    def _keys(self, namespace: str, prefix: str) -> list[str]:
        found = {k for ns, k in self._head.values if ns == namespace and k.startswith(prefix)}
        for (ns, key), value in self._overlay.items():
            if ns == namespace and key.startswith(prefix):
                if value is None:
                    found.discard(key)
                else:
                    found.add(key)
        return sorted(found)

    def _commit(self, writes: Writes, reads: set[Key], ranges: set[Key]) -> None:
        if self._failed is not None:
            raise self._failed
        if not writes:
            return
        if self._max_unflushed == 0:
            self._push(writes, reads, ranges)
            return
        if not self._journal:
            self._journal_id = str(uuid.uuid4())  # names the head its flush will write
        self._cache.append(self._journal_id, (writes, reads, ranges))
        self._journal.append((writes, reads, ranges))
        self._overlay.update(writes)
        if len(self._journal) > self._max_unflushed:
            self.flush()

    def flush(self) -> None:
        """Send the journal to the manager in one compare-and-set (write-through: no-op).

        :raises StoreConflictError: another writer changed what the journal read or
            wrote; the journal is kept, and this handle refuses commits from then on.
        """
        with self._lock:
            if not self._journal:
                return
            writes: Writes = {}
            reads: set[Key] = set()
            ranges: set[Key] = set()
            for w, r, p in self._journal:
                reads |= r - set(writes)  # a read of one's own earlier write is no read
                ranges |= p
                writes.update(w)
            try:
                self._push(writes, reads, ranges, flushing=True)
            except StoreConflictError as exc:
                self._failed = exc
                raise

    def _push(
        self,
        writes: Writes,
        reads: set[Key],
        ranges: set[Key],
        *,
        flushing: bool = False,
    ) -> None:
        """One commit to the manager: blobs, then the head by compare-and-set."""
        own: dict[Key, tuple[str, ...]] = {}
        new_blobs: dict[str, bytes] = {}
        for (ns, key), value in writes.items():
            if value is not None and len(value) > INLINE_MAX:
                sealed = seal_value(self._key, ns, key, value)
                chunks = chunks_of(sealed)
                own[(ns, key)] = tuple(blob_name(c) for c in chunks)
                new_blobs.update((blob_name(c), c) for c in chunks)
        for name, content in new_blobs.items():
            self._backend.write_blob(name, content)
        committed = False
        commit = self._journal_id if flushing else str(uuid.uuid4())
        try:
            for _attempt in range(MAX_REBASES + 1):
                base = self._head
                entries = dict(base.entries)
                values = dict(base.values)
                for k, value in writes.items():
                    if value is None:
                        entries.pop(k, None)
                        values.pop(k, None)
                    else:
                        entries[k] = ("r", own[k]) if k in own else ("i", value)
                        values[k] = value
                generation = base.generation + 1
                content, manifest_blobs = self._seal.encode(entries, generation, commit)
                for chunk in manifest_blobs:
                    self._backend.write_blob(blob_name(chunk), chunk)
                token = str(uuid.uuid4())
                try:
                    version = self._backend.write_head(base.version, content, token)
                except LostRace:
                    changed = self._refresh()
                    if self._head.commit == commit:  # it landed (before a crash, or its
                        # answer was lost): the head is this very commit
                        committed = True
                        self._adopt(self._head, flushed=flushing)
                        break
                    if conflicts(changed, set(writes) | reads, ranges):
                        raise StoreConflictError(
                            "another writer changed this agent's state first; nothing was "
                            "committed (read again and retry)"
                        ) from None
                    continue
                new_head = Head(
                    version=version,
                    generation=generation,
                    entries=entries,
                    values=values,
                    content=content,
                    commit=commit,
                    manifest_blobs=tuple(blob_name(c) for c in manifest_blobs),
                )
                self._blob_cache.update(new_blobs)
                self._blob_cache.update((blob_name(c), c) for c in manifest_blobs)
                dropped = base.blobs() - new_head.blobs()
                self._adopt(new_head, flushed=flushing)
                committed = True
                for name in sorted(dropped):
                    self._forget_blob(name)
                return
            if not committed:
                raise StoreConflictError(
                    f"lost {MAX_REBASES + 1} races in a row to other writers; nothing committed"
                )
        finally:
            if not committed:
                for name in new_blobs:
                    self._forget_blob(name)

    def _forget_blob(self, name: str) -> None:
        try:
            self._backend.delete_blob(name)
        except StoreError as exc:  # garbage left behind costs storage, not correctness
            log.warning("could not delete an unused blob secret: %s", type(exc).__name__)

    # -- the StateStore API -----------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            if self._closed:
                raise StateError("the store is closed")
            if self._txn_owner == threading.get_ident():
                raise StateError("inside a transaction, use the transaction object")
            yield

    def get(self, namespace: str, key: str) -> bytes | None:
        with self._locked():
            return self._view((check_name(namespace, "namespace"), check_name(key, "key")))

    def put(self, namespace: str, key: str, value: bytes) -> None:
        with self.transaction() as txn:
            txn.put(namespace, key, value)

    def delete(self, namespace: str, key: str) -> bool:
        with self.transaction() as txn:
            return txn.delete(namespace, key)

    def keys(self, namespace: str, prefix: str = "") -> list[str]:
        with self._locked():
            check_name(namespace, "namespace")
            return self._keys(namespace, check_prefix(prefix))

    def namespaces(self) -> list[str]:
        with self._locked():
            names = {ns for ns, _ in self._head.values}
            names |= {ns for (ns, _), v in self._overlay.items() if v is not None}
            return sorted(ns for ns in names if self._keys(ns, ""))

    def refresh(self) -> None:
        """Read the manager's current head now (reads otherwise show this handle's view)."""
        with self._locked():
            self._refresh()

    @contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        with self._locked():
            txn = _Txn(self)
            self._txn_owner = threading.get_ident()
            try:
                yield txn
                self._commit(txn.writes, txn.reads, txn.ranges)
            finally:
                txn.active = False
                self._txn_owner = None

    def close(self) -> None:
        """Flush the journal (if any), then release the handle (idempotent)."""
        with self._lock:
            if self._closed:
                return
            try:
                if self._failed is None:
                    self.flush()
            finally:
                self._closed = True
                self._cache.close()
                self._backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ManagedStore {self._label!r} closed={self._closed}>"
