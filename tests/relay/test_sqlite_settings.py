"""The SQLite backend's connection settings, whatever the SQLite build defaults to:
WAL with checkpoints of its own, commits synced at checkpoints (NORMAL), and deleted
content zeroed only where that costs no extra write (secure_delete FAST: Debian's
build defaults to ON, which rewrote every freed page of an acknowledged envelope)."""

from __future__ import annotations

from pathlib import Path

from sealwire_relay._sqlite_backend import SqliteBackend

SECURE_DELETE_FAST = 2
SYNCHRONOUS_NORMAL = 1


async def test_the_connection_settings(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "relay.sqlite3")
    await backend.start()
    try:
        db = backend._db
        assert db is not None
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        assert db.execute("PRAGMA synchronous").fetchone() == (SYNCHRONOUS_NORMAL,)
        assert db.execute("PRAGMA secure_delete").fetchone() == (SECURE_DELETE_FAST,)
    finally:
        await backend.close()
