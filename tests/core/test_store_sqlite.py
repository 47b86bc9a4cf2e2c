"""SqliteStore: durability settings, encryption at rest, tampering, hostile files.

Tampering goes through a second, raw sqlite3 connection to the same file,
the way an attacker with write access to the disk would.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealwire.errors import AuthenticationError
from sealwire.store import SCHEMA_VERSION, SqliteStore, StoreError, StoreKey

KEY = StoreKey.generate()


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def blob_of(path: Path, namespace: str, key: str) -> bytes:
    with raw(path) as conn:
        row = conn.execute(
            "SELECT value FROM kv WHERE namespace = ? AND key = ?", (namespace, key)
        ).fetchone()
    conn.close()
    return bytes(row[0])


def set_blob(path: Path, namespace: str, key: str, value: object) -> None:
    conn = raw(path)
    conn.execute(
        "INSERT OR REPLACE INTO kv (namespace, key, value) VALUES (?, ?, ?)",
        (namespace, key, value),
    )
    conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    with SqliteStore.open(path, KEY) as store:
        store.put("sessions", "alice", b"PLAINTEXT-SECRET-ALICE")
        store.put("sessions", "bob", b"PLAINTEXT-SECRET-BOB")
        store.put("groups", "alice", b"group state")
    return path


def test_file_mode_wal_and_full_sync(db: Path) -> None:
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    with SqliteStore.open(db, KEY) as store:
        conn = store._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        store.put("x", "y", b"z")
        for side in db.parent.iterdir():  # -wal and -shm inherit the mode
            assert stat.S_IMODE(os.stat(side).st_mode) == 0o600, side.name


def test_values_persist_and_are_encrypted_at_rest(db: Path) -> None:
    with SqliteStore.open(db, KEY) as store:
        assert store.get("sessions", "alice") == b"PLAINTEXT-SECRET-ALICE"
        assert store.keys("sessions") == ["alice", "bob"]
    for file in db.parent.iterdir():
        assert b"PLAINTEXT-SECRET" not in file.read_bytes()
    blob = blob_of(db, "sessions", "alice")
    assert blob[0] == 1 and len(blob) == 1 + 12 + len(b"PLAINTEXT-SECRET-ALICE") + 16
    # a fresh random nonce per write
    with SqliteStore.open(db, KEY) as store:
        store.put("sessions", "alice", b"PLAINTEXT-SECRET-ALICE")
    assert blob_of(db, "sessions", "alice")[1:13] != blob[1:13]


def test_wrong_key_fails_at_open_with_a_clear_error(db: Path) -> None:
    with pytest.raises(AuthenticationError, match="wrong store key"):
        SqliteStore.open(db, StoreKey.generate())
    with SqliteStore.open(db, KEY) as store:  # nothing was changed by the failure
        assert store.get("groups", "alice") == b"group state"


@pytest.mark.parametrize(
    ("source", "target"),
    [(("sessions", "alice"), ("sessions", "bob")), (("sessions", "alice"), ("groups", "alice"))],
)
def test_value_moved_to_another_key_fails(
    db: Path, source: tuple[str, str], target: tuple[str, str]
) -> None:
    set_blob(db, *target, blob_of(db, *source))
    with SqliteStore.open(db, KEY) as store:
        with pytest.raises(AuthenticationError):
            store.get(*target)
        assert store.get(*source) == b"PLAINTEXT-SECRET-ALICE"


@pytest.mark.parametrize("bad", [b"", b"\x01" * 28, b"\x02" + b"\x00" * 40, "text", 42, 1.5])
def test_malformed_values_fail_authentication(db: Path, bad: object) -> None:
    set_blob(db, "sessions", "alice", bad)
    with SqliteStore.open(db, KEY) as store, pytest.raises(AuthenticationError):
        store.get("sessions", "alice")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_any_flipped_bit_fails_and_changes_nothing(db: Path, data: st.DataObject) -> None:
    original = blob_of(db, "sessions", "bob")
    index = data.draw(st.integers(0, len(original) - 1))
    bit = data.draw(st.integers(0, 7))
    tampered = bytearray(original)
    tampered[index] ^= 1 << bit
    set_blob(db, "sessions", "bob", bytes(tampered))
    try:
        with SqliteStore.open(db, KEY) as store:
            with pytest.raises(AuthenticationError):
                store.get("sessions", "bob")
            assert store.get("sessions", "alice") == b"PLAINTEXT-SECRET-ALICE"
        assert blob_of(db, "sessions", "bob") == bytes(tampered)  # no state change
    finally:
        set_blob(db, "sessions", "bob", original)


def test_tampered_key_check_is_a_wrong_key(db: Path) -> None:
    conn = raw(db)
    conn.execute("UPDATE meta SET value = zeroblob(40) WHERE name = 'key-check'")
    conn.close()
    with pytest.raises(AuthenticationError):
        SqliteStore.open(db, KEY)


def test_newer_schema_is_refused(db: Path) -> None:
    conn = raw(db)
    conn.execute("UPDATE sealwire_schema SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        SqliteStore.open(db, KEY)


def test_corrupt_schema_version_is_refused(db: Path) -> None:
    conn = raw(db)
    conn.execute("INSERT INTO sealwire_schema (version) VALUES (7)")
    conn.close()
    with pytest.raises(StoreError, match="corrupt"):
        SqliteStore.open(db, KEY)


def test_empty_database_is_migrated_from_version_zero(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    raw(path).close()  # an existing, empty SQLite file: schema 0
    with SqliteStore.open(path, KEY) as store:
        store.put("a", "b", b"c")
    conn = raw(path)
    assert conn.execute("SELECT version FROM sealwire_schema").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = raw(path)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.close()
    with pytest.raises(StoreError, match="not a Sealwire store"):
        SqliteStore.open(path, KEY)


@pytest.mark.parametrize("content", [b"garbage" * 1000, os.urandom(8192), b"SQLite format 3\x00"])
def test_garbage_file_is_a_store_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(content)
    with pytest.raises(StoreError):
        SqliteStore.open(path, KEY)


def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        SqliteStore.open(tmp_path / "missing-dir" / "state.db", KEY)


def test_wide_permissions_are_reported(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    db.chmod(0o644)
    SqliteStore.open(db, KEY).close()
    assert "accessible to group or others" in caplog.text


def test_repr_shows_no_secret(db: Path) -> None:
    with SqliteStore.open(db, KEY) as store:
        text = repr(store) + repr(KEY) + str(KEY)
    assert KEY.export_for_file().strip().decode() not in text
    assert "redacted" in repr(KEY)


def test_two_connections_see_each_others_commits(db: Path) -> None:
    with SqliteStore.open(db, KEY) as one, SqliteStore.open(db, KEY) as two:
        with one.transaction() as txn:
            txn.put("shared", "k", b"from one")
        assert two.get("shared", "k") == b"from one"
