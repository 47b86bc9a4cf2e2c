"""The default state store: one SQLite file, WAL, encrypted at rest.

Rules of this file:

* Durability: WAL with ``synchronous=FULL``. In WAL mode ``NORMAL`` keeps the
  file consistent but may lose the last commits on power loss; ``FULL`` syncs
  the WAL at every commit, so a value is on disk when ``put`` returns (a
  ratchet step must not be replayed after a crash).
* Atomicity: each write outside a transaction is its own SQLite transaction;
  :meth:`SqliteStore.transaction` is ``BEGIN IMMEDIATE`` ... ``COMMIT`` (the
  write lock is taken up front, so it never fails half-way on a busy lock).
* Encryption: every value is sealed with AES-256-GCM under the store key with
  a random 96-bit nonce. ``sealed = format(1) || nonce(12) || ciphertext+tag``
  and ``AAD = format || u32 len || namespace || u32 len || key`` (UTF-8), so a
  value copied to another key or namespace fails to open. Namespaces and key
  names are NOT encrypted, nor are value lengths; an attacker who can write
  the file can delete values or roll one back to an older sealed version of
  the same key (no freshness). With random nonces a key should seal fewer than
  2**32 values (NIST SP 800-38D section 8.3); rotate it long before.
* A key-check value sealed at creation makes a wrong key fail at open with
  :class:`AuthenticationError`.
* Versions: the ``sealwire_schema`` table holds the schema version; opening an
  older file runs the migrations in order, a newer one is refused.
* The file is created with mode 0600. One connection, guarded by a lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

from cryptography.exceptions import InvalidTag

from sealwire.errors import AuthenticationError, StateError
from sealwire.store._base import (
    StoreError,
    StoreTransaction,
    check_name,
    check_prefix,
    check_value,
)
from sealwire.store._keys import StoreKey

__all__ = ["SCHEMA_VERSION", "VALUE_FORMAT", "SqliteStore", "migrate"]

log = logging.getLogger("sealwire.store")

SCHEMA_VERSION = 1
VALUE_FORMAT = 1
NONCE_SIZE = 12
TAG_SIZE = 16
BUSY_TIMEOUT = 10.0
"""Seconds to wait for another process's write lock before failing."""

_META_NAMESPACE = "\x00sealwire-meta"  # NUL is forbidden in user names: no collision
_KEY_CHECK = "key-check"
_KEY_CHECK_PLAINTEXT = b"sealwire store key check v1"
_U32 = struct.Struct(">I")


def _create_v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE sealwire_schema (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO sealwire_schema (version) VALUES (0)")
    conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
    conn.execute(
        "CREATE TABLE kv (namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
        " PRIMARY KEY (namespace, key)) WITHOUT ROWID"
    )


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {0: _create_v1}
"""``MIGRATIONS[v]`` turns schema ``v`` into ``v + 1`` (0 is an empty file)."""


def _schema_version(conn: sqlite3.Connection) -> int:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "sealwire_schema" not in tables:
        if tables:
            raise StoreError("the file holds a database that is not a Sealwire store")
        return 0
    rows = conn.execute("SELECT version FROM sealwire_schema").fetchall()
    if len(rows) != 1 or type(rows[0][0]) is not int or rows[0][0] < 0:
        raise StoreError("the store's schema version is corrupt")
    return int(rows[0][0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION` (call inside a write transaction).

    :returns: the version found. :raises StoreError: for a newer or corrupt file.
    """
    found = _schema_version(conn)
    if found > SCHEMA_VERSION:
        raise StoreError(f"store schema {found} is newer than this Sealwire ({SCHEMA_VERSION})")
    for version in range(found, SCHEMA_VERSION):
        MIGRATIONS[version](conn)
        conn.execute("UPDATE sealwire_schema SET version = ?", (version + 1,))
        log.info("store schema migrated from %d to %d", version, version + 1)
    return found


def _aad(namespace: str, key: str) -> bytes:
    ns, k = namespace.encode("utf-8"), key.encode("utf-8")
    return bytes([VALUE_FORMAT]) + _U32.pack(len(ns)) + ns + _U32.pack(len(k)) + k


def seal(store_key: StoreKey, namespace: str, key: str, value: bytes) -> bytes:
    """Seal one value for ``(namespace, key)`` (the format in this module's docstring)."""
    nonce = os.urandom(NONCE_SIZE)
    sealed = store_key.aead.encrypt(nonce, value, _aad(namespace, key))
    return bytes([VALUE_FORMAT]) + nonce + sealed


def unseal(store_key: StoreKey, namespace: str, key: str, blob: object) -> bytes:
    """Open a sealed value; :class:`AuthenticationError` for any damage or a moved value."""
    if not isinstance(blob, bytes) or len(blob) < 1 + NONCE_SIZE + TAG_SIZE:
        raise AuthenticationError("stored value failed authentication")
    if blob[0] != VALUE_FORMAT:
        raise AuthenticationError("stored value failed authentication")
    try:
        return store_key.aead.decrypt(
            blob[1 : 1 + NONCE_SIZE], blob[1 + NONCE_SIZE :], _aad(namespace, key)
        )
    except InvalidTag:
        raise AuthenticationError("stored value failed authentication") from None


@contextmanager
def _sqlite_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"sqlite: {type(exc).__name__}: {exc}") from None
    except UnicodeError:  # a damaged TEXT cell (the driver raises it on some builds)
        raise StoreError("sqlite: a stored name is not UTF-8: the file is damaged") from None


def _name(value: object, column: str) -> str:
    """A name read back from the file: TEXT, else the file was written by something else."""
    if not isinstance(value, str):
        raise StoreError(f"a stored {column} is not text: the file is damaged")
    return value


def _create_private(path: Path) -> None:
    """Create the file with mode 0600 if absent; warn when an existing one is wider."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot open store file {path}: {exc.strerror}") from None
    try:
        if os.fstat(fd).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("store file %s is accessible to group or others (chmod 600)", path)
    finally:
        os.close(fd)


class _SqliteTransaction:
    """The :class:`StoreTransaction` handed out by :meth:`SqliteStore.transaction`.

    Each call takes the store's lock, so another thread using this object waits
    for the transaction to end and then gets :class:`StateError`.
    """

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.active = True

    @contextmanager
    def _open(self) -> Iterator[SqliteStore]:
        with self._store._lock:
            if not self.active:
                raise StateError("the transaction is over")
            yield self._store

    def get(self, namespace: str, key: str) -> bytes | None:
        with self._open() as store:
            return store._get(namespace, key)

    def put(self, namespace: str, key: str, value: bytes) -> None:
        with self._open() as store:
            store._put(namespace, key, value)

    def delete(self, namespace: str, key: str) -> bool:
        with self._open() as store:
            return store._delete(namespace, key)

    def keys(self, namespace: str, prefix: str = "") -> list[str]:
        with self._open() as store:
            return store._keys(namespace, prefix)


class SqliteStore:
    """A :class:`StateStore` in one SQLite file, every value sealed with AES-256-GCM.

    Values are confidential and bound to their ``(namespace, key)``; the names
    themselves, value sizes and the times of writes are not hidden.
    """

    def __init__(self, conn: sqlite3.Connection, key: StoreKey, path: str) -> None:
        """Use :meth:`open`."""
        self._conn = conn
        self._key = key
        self.path = path
        self._lock = threading.RLock()
        self._txn_owner: int | None = None
        self._closed = False

    @classmethod
    def open(cls, path: str | Path, key: StoreKey) -> SqliteStore:
        """Open or create a store (``":memory:"`` for a private in-memory database).

        :raises AuthenticationError: ``key`` is not the key the store was created with.
        :raises StoreError: the file is not a Sealwire store, is newer, or cannot be opened.
        """
        location = str(path)
        if location != ":memory:":
            _create_private(Path(location))
        with _sqlite_errors():
            conn = sqlite3.connect(
                location, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        try:
            with _sqlite_errors():
                cls._prepare(conn, key, location)
        except BaseException:
            conn.close()
            raise
        return cls(conn, key, location)

    @staticmethod
    def _prepare(conn: sqlite3.Connection, key: StoreKey, location: str) -> None:
        conn.execute("PRAGMA trusted_schema = OFF")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if location != ":memory:" and str(mode).lower() != "wal":
            raise StoreError(f"cannot enable WAL on {location} (journal mode {mode})")
        conn.execute("PRAGMA synchronous = FULL")  # see the rules at the top of this file
        conn.execute("BEGIN IMMEDIATE")
        try:
            migrate(conn)
            row = conn.execute("SELECT value FROM meta WHERE name = ?", (_KEY_CHECK,)).fetchone()
            if row is None:
                check = seal(key, _META_NAMESPACE, _KEY_CHECK, _KEY_CHECK_PLAINTEXT)
                conn.execute("INSERT INTO meta (name, value) VALUES (?, ?)", (_KEY_CHECK, check))
            else:
                try:
                    unseal(key, _META_NAMESPACE, _KEY_CHECK, row[0])
                except AuthenticationError:
                    raise AuthenticationError("wrong store key for this store") from None
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- operations, with the lock held --------------------------------------------------

    def _get(self, namespace: str, key: str) -> bytes | None:
        check_name(namespace, "namespace")
        check_name(key, "key")
        with _sqlite_errors():
            row = self._conn.execute(
                "SELECT value FROM kv WHERE namespace = ? AND key = ?", (namespace, key)
            ).fetchone()
        return None if row is None else unseal(self._key, namespace, key, row[0])

    def _put(self, namespace: str, key: str, value: bytes) -> None:
        check_name(namespace, "namespace")
        check_name(key, "key")
        blob = seal(self._key, namespace, key, check_value(value))
        with _sqlite_errors():
            self._conn.execute(
                "INSERT OR REPLACE INTO kv (namespace, key, value) VALUES (?, ?, ?)",
                (namespace, key, blob),
            )

    def _delete(self, namespace: str, key: str) -> bool:
        check_name(namespace, "namespace")
        check_name(key, "key")
        with _sqlite_errors():
            cursor = self._conn.execute(
                "DELETE FROM kv WHERE namespace = ? AND key = ?", (namespace, key)
            )
        return cursor.rowcount > 0

    def _keys(self, namespace: str, prefix: str) -> list[str]:
        check_name(namespace, "namespace")
        check_prefix(prefix)
        # BINARY collation compares UTF-8 bytes, which orders like code points, and
        # the keys with a prefix are one contiguous run starting at the prefix.
        found: list[str] = []
        with _sqlite_errors():
            cursor = self._conn.execute(
                "SELECT key FROM kv WHERE namespace = ? AND key >= ? ORDER BY key",
                (namespace, prefix),
            )
            try:
                for (value,) in cursor:
                    key = _name(value, "key")
                    if not key.startswith(prefix):
                        break
                    found.append(key)
            finally:
                cursor.close()
        return found

    # -- the StateStore API ----------------------------------------------------------------

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
            return self._get(namespace, key)

    def put(self, namespace: str, key: str, value: bytes) -> None:
        with self._locked():
            self._put(namespace, key, value)

    def delete(self, namespace: str, key: str) -> bool:
        with self._locked():
            return self._delete(namespace, key)

    def keys(self, namespace: str, prefix: str = "") -> list[str]:
        with self._locked():
            return self._keys(namespace, prefix)

    def namespaces(self) -> list[str]:
        with self._locked(), _sqlite_errors():
            rows = self._conn.execute("SELECT DISTINCT namespace FROM kv ORDER BY namespace")
            return [_name(row[0], "namespace") for row in rows]

    @contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        with self._locked():
            with _sqlite_errors():
                self._conn.execute("BEGIN IMMEDIATE")
            txn = _SqliteTransaction(self)
            self._txn_owner = threading.get_ident()
            try:
                yield txn
                with _sqlite_errors():
                    self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # keep the original error
                        self._conn.execute("ROLLBACK")
                raise
            finally:
                txn.active = False
                self._txn_owner = None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._conn.close()

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
        return f"<SqliteStore {self.path!r} closed={self._closed}>"
