"""The state store contract and the in-memory store.

A store maps ``(namespace, key)`` to bytes. Every method is synchronous: the
default backend is SQLite in the same process, and a write must be durable
before a protocol hands on what it unlocked (a ratchet step commits before
its plaintext leaves). :meth:`StateStore.transaction` makes several writes
atomic: all of them or none.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from sealwire.errors import SealwireError, StateError

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_VALUE_SIZE",
    "EnumerableStore",
    "MemoryStore",
    "StateStore",
    "StoreConflictError",
    "StoreCredentialsError",
    "StoreError",
    "StoreThrottledError",
    "StoreTransaction",
    "StoreUnavailableError",
]

MAX_NAME_LENGTH = 1024
"""Characters in a namespace or key: names are labels (ids, fingerprints), not data."""

MAX_VALUE_SIZE = 64 * 1024 * 1024
"""Bytes in one value (64 MiB): far above a group state at 10,000 members,
and a bound on what one read may allocate."""


class StoreError(SealwireError):
    """The store failed or was given an invalid name or value."""


class StoreConflictError(StoreError):
    """Another writer changed what this write read or wrote: nothing was committed.

    A remote store (a secrets manager) raises it when its compare-and-set lost a
    race that cannot be rebased; the caller must not hand on anything the failed
    write would have unlocked, and reads again before a new attempt."""


class StoreUnavailableError(StoreError):
    """The store's server could not be reached, or kept failing, within the retry bound."""


class StoreThrottledError(StoreUnavailableError):
    """The store's server kept refusing calls for their rate within the retry bound."""


class StoreCredentialsError(StoreError):
    """The store's server refused the credentials (expired, revoked or missing)."""


@runtime_checkable
class StoreTransaction(Protocol):
    """The view of a store inside :meth:`StateStore.transaction`; reads see its own writes."""

    def get(self, namespace: str, key: str) -> bytes | None: ...
    def put(self, namespace: str, key: str, value: bytes) -> None: ...
    def delete(self, namespace: str, key: str) -> bool: ...
    def keys(self, namespace: str, prefix: str = "") -> list[str]: ...


@runtime_checkable
class StateStore(Protocol):
    """Namespaced key -> bytes; synchronous, thread-safe, durable when ``put`` returns."""

    def get(self, namespace: str, key: str) -> bytes | None:
        """The value, or ``None`` when the key is absent."""
        ...

    def put(self, namespace: str, key: str, value: bytes) -> None:
        """Store a value; durable when this returns."""
        ...

    def delete(self, namespace: str, key: str) -> bool:
        """Remove a key; ``True`` when it existed."""
        ...

    def keys(self, namespace: str, prefix: str = "") -> list[str]:
        """The keys of a namespace that start with ``prefix``, sorted by code point."""
        ...

    def transaction(self) -> AbstractContextManager[StoreTransaction]:
        """An atomic unit: every write inside it commits, or (on exception) none does."""
        ...

    def close(self) -> None:
        """Release the store (idempotent); later calls raise :class:`StateError`."""
        ...


@runtime_checkable
class EnumerableStore(StateStore, Protocol):
    """A store that can list its namespaces: what ``sealwire store migrate`` copies from."""

    def namespaces(self) -> list[str]:
        """Every namespace holding at least one key, sorted by code point."""
        ...


def check_name(name: str, what: str) -> str:
    """A namespace or key: a non-empty str of bounded length, valid UTF-8, no NUL."""
    if not isinstance(name, str):
        raise StoreError(f"{what} must be a str, not {type(name).__name__}")
    if not name or len(name) > MAX_NAME_LENGTH:
        raise StoreError(f"{what} must have 1 to {MAX_NAME_LENGTH} characters")
    if "\x00" in name:
        raise StoreError(f"{what} must not contain NUL")
    if not name.isascii():  # every store call checks its names: ASCII needs no encoding
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise StoreError(f"{what} must be encodable as UTF-8") from None
    return name


def check_prefix(prefix: str) -> str:
    """A key prefix may be empty; otherwise the rules of a key apply."""
    return check_name(prefix, "prefix") if prefix != "" else prefix


def check_value(value: bytes) -> bytes:
    """A value: bytes-like, at most :data:`MAX_VALUE_SIZE` bytes; returned as ``bytes``."""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise StoreError(f"value must be bytes, not {type(value).__name__}")
    value = bytes(value)
    if len(value) > MAX_VALUE_SIZE:
        raise StoreError(f"value of {len(value)} bytes exceeds {MAX_VALUE_SIZE}")
    return value


class _MemoryTransaction:
    """Writes staged over the committed data; ``None`` marks a deletion.

    Each call takes the store's lock, so another thread using this object waits
    for the transaction to end and then gets :class:`StateError`.
    """

    def __init__(self, data: dict[str, dict[str, bytes]], lock: threading.RLock) -> None:
        self._data = data
        self._lock = lock
        self.staged: dict[tuple[str, str], bytes | None] = {}
        self.active = True

    def _check(self) -> None:
        with self._lock:
            if not self.active:
                raise StateError("the transaction is over")

    def get(self, namespace: str, key: str) -> bytes | None:
        self._check()
        k = (check_name(namespace, "namespace"), check_name(key, "key"))
        if k in self.staged:
            return self.staged[k]
        return self._data.get(namespace, {}).get(key)

    def put(self, namespace: str, key: str, value: bytes) -> None:
        self._check()
        k = (check_name(namespace, "namespace"), check_name(key, "key"))
        self.staged[k] = check_value(value)

    def delete(self, namespace: str, key: str) -> bool:
        existed = self.get(namespace, key) is not None
        self.staged[(namespace, key)] = None
        return existed

    def keys(self, namespace: str, prefix: str = "") -> list[str]:
        self._check()
        check_name(namespace, "namespace")
        check_prefix(prefix)
        found = set(self._data.get(namespace, {}))
        for (ns, key), value in self.staged.items():
            if ns == namespace and value is None:
                found.discard(key)
            elif ns == namespace:
                found.add(key)
        return sorted(k for k in found if k.startswith(prefix))

    def apply(self) -> None:
        for (ns, key), value in self.staged.items():
            if value is None:
                self._data.get(ns, {}).pop(key, None)
            else:
                self._data.setdefault(ns, {})[key] = value


class MemoryStore:
    """A :class:`StateStore` in memory: for tests and ephemeral agents.

    Same semantics as :class:`~sealwire.store.SqliteStore` (names, limits,
    atomic transactions, one writer at a time), no persistence, no encryption.
    """

    def __init__(self) -> None:
        self._data: dict[str, dict[str, bytes]] = {}
        self._lock = threading.RLock()
        self._txn_owner: int | None = None
        self._closed = False

    def _enter(self) -> None:
        if self._closed:
            raise StateError("the store is closed")
        if self._txn_owner == threading.get_ident():
            raise StateError("inside a transaction, use the transaction object")

    def _run(self) -> _MemoryTransaction:
        self._enter()
        return _MemoryTransaction(self._data, self._lock)

    def get(self, namespace: str, key: str) -> bytes | None:
        with self._lock:
            return self._run().get(namespace, key)

    def put(self, namespace: str, key: str, value: bytes) -> None:
        with self._lock:
            txn = self._run()
            txn.put(namespace, key, value)
            txn.apply()

    def delete(self, namespace: str, key: str) -> bool:
        with self._lock:
            txn = self._run()
            existed = txn.delete(namespace, key)
            txn.apply()
            return existed

    def keys(self, namespace: str, prefix: str = "") -> list[str]:
        with self._lock:
            return self._run().keys(namespace, prefix)

    def namespaces(self) -> list[str]:
        with self._lock:
            self._enter()
            return sorted(ns for ns, keys in self._data.items() if keys)

    @contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        with self._lock:
            txn = self._run()
            self._txn_owner = threading.get_ident()
            try:
                yield txn
                txn.apply()
            finally:
                txn.active = False
                self._txn_owner = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._data = {}

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
        return f"<MemoryStore closed={self._closed}>"
