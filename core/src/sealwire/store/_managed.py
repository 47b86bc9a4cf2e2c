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

import base64
import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Protocol, Self

import attrs

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
from sealwire.store._sqlite import SqliteStore
from sealwire.store._sqlite import seal as seal_value
from sealwire.store._sqlite import unseal as unseal_value

__all__ = [
    "CHUNK_MAX",
    "HEAD_MAX",
    "INLINE_MAX",
    "MAX_REBASES",
    "CallCounter",
    "LostRace",
    "ManagedStore",
    "SecretsBackend",
]

log = logging.getLogger("sealwire.store.managed")

INLINE_MAX = 1024
"""Bytes of a value kept inside the manifest. A ratchet state (a few hundred bytes)
stays inline, so a ratchet step is one head write; a group state (kilobytes) is
written once as a blob instead of being rewritten with every head."""

HEAD_MAX = 60 * 1024
"""Bytes of one head or blob secret: below the 64 KiB a secret value may hold in
AWS Secrets Manager (65,536) and GCP Secret Manager (65,536), with room to spare."""

CHUNK_MAX = HEAD_MAX
"""Bytes of one blob secret (a longer sealed value is split into several)."""

MAX_REBASES = 8
"""Lost races one commit retries on a newer head before giving up with a conflict:
enough for a few writers on disjoint keys, a bound against a livelock."""

MANIFEST_VERSION = 1
_HEAD_NS = "\x00sealwire-head"  # the AAD of the manifest: NUL is in no user namespace
_CACHE_NS = "cache"
_JOURNAL_NS = "journal"
_INLINE_HEAD = b"I"
_BLOB_HEAD = b"R"

Key = tuple[str, str]


class LostRace(Exception):
    """The manager's head is no longer the version a compare-and-set expected."""


class SecretsBackend(Protocol):
    """What a secrets manager offers the engine; every call may raise a StoreError."""

    def read_head(self) -> tuple[str, bytes] | None:
        """The current head's version id and content, or None when there is none."""
        ...

    def write_head(self, base: str | None, content: bytes, token: str) -> str:
        """Make ``content`` the head if the current head is still ``base``.

        ``token`` names the new version (retries of one attempt reuse it).
        :returns: the new version id. :raises LostRace: the head is not ``base``.
        """
        ...

    def write_blob(self, name: str, content: bytes) -> None: ...
    def read_blob(self, name: str) -> bytes: ...
    def delete_blob(self, name: str) -> None: ...
    def close(self) -> None: ...


@attrs.define
class CallCounter:
    """Calls and bytes sent to the manager, by kind (for the benchmark and the docs)."""

    calls: dict[str, int] = attrs.field(factory=dict)
    bytes_sent: int = 0
    bytes_received: int = 0

    def count(self, kind: str, sent: int = 0, received: int = 0) -> None:
        self.calls[kind] = self.calls.get(kind, 0) + 1
        self.bytes_sent += sent
        self.bytes_received += received

    @property
    def total(self) -> int:
        return sum(self.calls.values())


# An entry of the manifest: the value itself (inline) or the names of its blobs.
Entry = tuple[str, bytes | tuple[str, ...]]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise StoreError("the manager's state is malformed")
    return base64.b64decode(text, validate=True)


@attrs.frozen
class _Head:
    version: str | None
    generation: int
    entries: Mapping[Key, Entry]
    values: Mapping[Key, bytes]
    content: bytes = b""
    """The head secret's content, exactly as in the manager."""
    commit: str = ""
    """The id of the commit (or flushed journal) that wrote this head."""
    manifest_blobs: tuple[str, ...] = ()

    def blobs(self) -> set[str]:
        names = set(self.manifest_blobs)
        for kind, ref in self.entries.values():
            if isinstance(ref, tuple) and kind == "r":
                names.update(ref)
        return names


_EMPTY = _Head(version=None, generation=0, entries={}, values={})


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
        self._cache = cache
        self._max_unflushed = max_unflushed
        self.counter = counter or CallCounter()
        self._lock = threading.RLock()
        self._txn_owner: int | None = None
        self._closed = False
        self._failed: StoreError | None = None
        self._head = _EMPTY
        self._overlay: dict[Key, bytes | None] = {}
        self._journal: list[tuple[dict[Key, bytes | None], set[Key], set[Key]]] = []
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

    # -- the manifest, sealed ---------------------------------------------------------------

    def _encode(
        self, entries: Mapping[Key, Entry], generation: int, commit: str
    ) -> tuple[bytes, list[bytes]]:
        """The head content and the blobs it needs besides the values' own."""
        rows: list[list[object]] = []
        for (ns, key), (_kind, ref) in sorted(entries.items()):
            if isinstance(ref, bytes):
                rows.append([ns, key, "i", _b64(ref)])
            else:
                rows.append([ns, key, "r", list(ref)])
        manifest = json.dumps(
            {"v": MANIFEST_VERSION, "g": generation, "c": commit, "e": rows},
            separators=(",", ":"),
        ).encode()
        sealed = seal_value(self._key, _HEAD_NS, self._label, manifest)
        if len(sealed) + 1 <= HEAD_MAX:
            return _INLINE_HEAD + sealed, []
        chunks = [sealed[i : i + CHUNK_MAX] for i in range(0, len(sealed), CHUNK_MAX)]
        names = [_blob_name(c) for c in chunks]
        return _BLOB_HEAD + json.dumps(names).encode(), chunks

    def _decode(self, version: str, content: bytes, known: dict[str, bytes]) -> _Head:
        """The head ``content``; blobs come from ``known`` or the manager (and join ``known``)."""
        manifest_blobs: tuple[str, ...] = ()
        if content[:1] == _BLOB_HEAD:
            manifest_blobs = tuple(str(n) for n in json.loads(content[1:]))
            sealed = b"".join(self._read_blob(n, known) for n in manifest_blobs)
        elif content[:1] == _INLINE_HEAD:
            sealed = content[1:]
        else:
            raise StoreError("the manager's head is not a Sealwire state")
        try:
            manifest = json.loads(unseal_value(self._key, _HEAD_NS, self._label, sealed))
        except AuthenticationError:
            raise AuthenticationError(
                "the manager's head failed authentication: a wrong store key, or a value "
                "changed behind the agent's back"
            ) from None
        if manifest.get("v") != MANIFEST_VERSION:
            raise StoreError(f"manifest version {manifest.get('v')!r} is not supported")
        entries: dict[Key, Entry] = {}
        values: dict[Key, bytes] = {}
        for ns, key, kind, ref in manifest["e"]:
            if kind == "i":
                value = _unb64(ref)
                entries[(ns, key)] = ("i", value)
            else:
                names = tuple(ref)
                entries[(ns, key)] = ("r", names)
                blob = b"".join(self._read_blob(n, known) for n in names)
                value = unseal_value(self._key, ns, key, blob)
            values[(ns, key)] = value
        return _Head(
            version=version,
            generation=int(manifest["g"]),
            entries=entries,
            values=values,
            content=content,
            commit=str(manifest.get("c", "")),
            manifest_blobs=manifest_blobs,
        )

    def _read_blob(self, name: str, known: dict[str, bytes]) -> bytes:
        if name in known:
            return known[name]
        content = self._backend.read_blob(name)
        if _blob_name(content) != name:
            raise AuthenticationError("a blob in the manager does not match its name")
        known[name] = content
        return content

    # -- the local cache ------------------------------------------------------------------

    def _snapshot(self) -> tuple[str | None, int, bytes, dict[str, bytes]]:
        raw = self._cache.get(_CACHE_NS, "snapshot")
        if raw is None:
            return None, 0, b"", {}
        record = json.loads(raw)
        blobs = {n: _unb64(b) for n, b in record["blobs"].items()}
        return record["version"], int(record["generation"]), _unb64(record["head"]), blobs

    def _load_journal(self) -> None:
        for name in self._cache.keys(_JOURNAL_NS):
            raw = self._cache.get(_JOURNAL_NS, name)
            if raw is None:
                continue
            record = json.loads(raw)
            self._journal_id = self._journal_id or str(record["id"])
            writes: dict[Key, bytes | None] = {
                (ns, k): None if v is None else _unb64(v) for ns, k, v in record["w"]
            }
            self._journal.append(
                (writes, {(ns, k) for ns, k in record["r"]}, {(ns, p) for ns, p in record["p"]})
            )
            self._overlay.update(writes)

    # -- reading and committing -----------------------------------------------------------

    def _load_snapshot(self) -> None:
        """Start from the head the cache holds (no call: its blobs are cached too)."""
        version, _generation, content, blobs = self._snapshot()
        self._blob_cache = dict(blobs)
        if version is not None:
            self._head = self._decode(version, content, self._blob_cache)

    def _refresh(self) -> set[Key]:
        """Adopt the manager's current head; the keys that changed since ours."""
        current = self._backend.read_head()
        if current is None:
            head = _EMPTY
        elif current[0] == self._head.version:
            return set()
        else:
            head = self._decode(current[0], current[1], self._blob_cache)
        if head.generation < self._head.generation:
            raise StoreConflictError(
                f"the manager's state (generation {head.generation}) is older than one this "
                f"host saw ({self._head.generation}): rolled back behind the agent's back; "
                "restore the newest version before going on"
            )
        changed = _changed(self._head, head)
        self._adopt(head)
        return changed

    def _adopt(self, head: _Head, *, flushed: bool = False) -> None:
        """Make ``head`` this handle's view and, unless a journal waits (the snapshot is
        its base then), the cache's snapshot. ``flushed``: the journal is in ``head``;
        it is dropped in the same local transaction as the snapshot is written."""
        self._head = head
        wanted = head.blobs()
        self._blob_cache = {n: b for n, b in self._blob_cache.items() if n in wanted}
        if self._journal and not flushed:
            return
        record = {
            "version": head.version,
            "generation": head.generation,
            "head": _b64(head.content),
            "blobs": {n: _b64(b) for n, b in self._blob_cache.items()},
        }
        with self._cache.transaction() as txn:
            if flushed:
                for name in txn.keys(_JOURNAL_NS):
                    txn.delete(_JOURNAL_NS, name)
            txn.put(_CACHE_NS, "snapshot", json.dumps(record).encode())
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

    def _commit(self, writes: dict[Key, bytes | None], reads: set[Key], ranges: set[Key]) -> None:
        if self._failed is not None:
            raise self._failed
        if not writes:
            return
        if self._max_unflushed == 0:
            self._push(writes, reads, ranges)
            return
        seq = len(self._cache.keys(_JOURNAL_NS)) + 1
        if not self._journal:
            self._journal_id = str(uuid.uuid4())  # names the head its flush will write
        record = {
            "id": self._journal_id,
            "w": [[ns, k, None if v is None else _b64(v)] for (ns, k), v in writes.items()],
            "r": [list(k) for k in sorted(reads)],
            "p": [list(k) for k in sorted(ranges)],
        }
        self._cache.put(_JOURNAL_NS, f"{seq:012d}", json.dumps(record).encode())
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
            writes: dict[Key, bytes | None] = {}
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
        writes: dict[Key, bytes | None],
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
                chunks = [sealed[i : i + CHUNK_MAX] for i in range(0, len(sealed), CHUNK_MAX)]
                own[(ns, key)] = tuple(_blob_name(c) for c in chunks)
                new_blobs.update((_blob_name(c), c) for c in chunks)
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
                content, manifest_blobs = self._encode(entries, generation, commit)
                for chunk in manifest_blobs:
                    self._backend.write_blob(_blob_name(chunk), chunk)
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
                    if _conflicts(changed, set(writes) | reads, ranges):
                        raise StoreConflictError(
                            "another writer changed this agent's state first; nothing was "
                            "committed (read again and retry)"
                        ) from None
                    continue
                new_head = _Head(
                    version=version,
                    generation=generation,
                    entries=entries,
                    values=values,
                    content=content,
                    commit=commit,
                    manifest_blobs=tuple(_blob_name(c) for c in manifest_blobs),
                )
                self._blob_cache.update(new_blobs)
                self._blob_cache.update((_blob_name(c), c) for c in manifest_blobs)
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


def _blob_name(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _changed(old: _Head, new: _Head) -> set[Key]:
    keys = set(old.entries) | set(new.entries)
    return {k for k in keys if old.entries.get(k) != new.entries.get(k)}


def _conflicts(changed: set[Key], touched: set[Key], ranges: set[Key]) -> bool:
    if changed & touched:
        return True
    return any(
        ns == rns and key.startswith(prefix) for ns, key in changed for rns, prefix in ranges
    )
