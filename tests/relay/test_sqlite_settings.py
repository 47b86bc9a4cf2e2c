"""The SQLite backend's connection settings, whatever the SQLite build defaults to:
WAL with checkpoints of its own, commits synced at checkpoints (NORMAL), and deleted
content zeroed only where that costs no extra write (secure_delete FAST: Debian's
build defaults to ON, which rewrote every freed page of an acknowledged envelope);
4 KiB pages in a new file, a file's own page size kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealwire.relay import Delivery
from sealwire_relay import _sqlite_backend
from sealwire_relay._sqlite_backend import PAGE_SIZE, SqliteBackend

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
        assert db.execute("PRAGMA page_size").fetchone() == (PAGE_SIZE,) == (4096,)
    finally:
        await backend.close()


async def test_a_file_made_with_other_pages_keeps_them_and_its_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "relay.sqlite3"
    with monkeypatch.context() as patched:
        patched.setattr(_sqlite_backend, "PAGE_SIZE", 8192)
        old = SqliteBackend(path)
        await old.start()
        message = Delivery(message_id="m", sender="s", envelope=b"x" * 20_000, received_at=1.0)
        assert await old.enqueue("bob", message, max_depth=10)
        await old.close()
    backend = SqliteBackend(path)
    await backend.start()
    try:
        assert backend._db is not None
        assert backend._db.execute("PRAGMA page_size").fetchone() == (8192,)
        assert await backend.fetch("bob", 10) == [message]
    finally:
        await backend.close()
