"""The SQLite backend forgets acknowledged ids once they are older than the retention,
keeps the younger ones (a late retry of them is still a duplicate), and finds both
through indexes: a relay keeps a week of acknowledged ids, and a prune that scanned
them would block its event loop longer as its traffic grew. Nor does a mailbox's read
go through them: its index holds only the messages that wait."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sealwire.relay import Delivery
from sealwire_relay import _sqlite_backend
from sealwire_relay._limits import DEDUPE_RETENTION_SECONDS
from sealwire_relay._sqlite_backend import NEWEST_ARRIVAL, PRUNE_ACKED, SqliteBackend

SENDER = "sw1sender"
DAY = 24 * 3600.0


def _delivery(message_id: str, at: float) -> Delivery:
    return Delivery(message_id=message_id, sender=SENDER, envelope=b"x", received_at=at)


def _ids(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT message_id FROM messages")}


@pytest.mark.parametrize("path", ["ack", "batch"])
async def test_acknowledged_ids_past_the_retention_are_forgotten_the_younger_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    monkeypatch.setattr(_sqlite_backend, "PRUNE_EVERY_ACKS", 3)
    file = tmp_path / "relay.sqlite3"
    backend = SqliteBackend(file)
    await backend.start()
    try:
        now = 100 * DAY
        messages = {
            "old": now - DEDUPE_RETENTION_SECONDS - DAY,  # acknowledged, past the retention
            "young": now - DEDUPE_RETENTION_SECONDS + DAY,  # acknowledged, within it
            "pending": now - 2 * DEDUPE_RETENTION_SECONDS,  # never acknowledged: kept
            "newest": now,
        }
        for message_id, at in messages.items():
            assert await backend.enqueue("box", _delivery(message_id, at), max_depth=100)
        acks = [(SENDER, "old"), (SENDER, "young"), (SENDER, "newest")]
        if path == "ack":
            assert await backend.ack("box", acks) == 3
        else:
            triples = [("box", sender, mid) for sender, mid in acks]
            acked, _ = await backend.commit_mailbox_batch(triples, [], max_depth=100)
            assert acked == [True, True, True]

        assert _ids(file) == {"young", "pending", "newest"}
        # A retry of a message still remembered is a duplicate; of one forgotten, new.
        assert not await backend.enqueue("box", _delivery("young", now), max_depth=100)
        assert await backend.enqueue("box", _delivery("old", now), max_depth=100)
    finally:
        await backend.close()


async def test_the_prune_reads_through_indexes_not_the_whole_table(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "relay.sqlite3")
    await backend.start()  # creates the schema, the prune's index with it
    await backend.close()
    with sqlite3.connect(tmp_path / "relay.sqlite3") as db:
        prune = " ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + PRUNE_ACKED, (1.0,)))
        assert "USING INDEX messages_acked" in prune
        # The newest arrival: rows in rowid order, no sort (a temporary B-tree), the
        # first one taken (LIMIT 1).
        newest = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + NEWEST_ARRIVAL)]
        assert newest == ["SCAN messages"]


async def test_a_mailbox_is_read_through_the_index_of_what_waits(tmp_path: Path) -> None:
    path = tmp_path / "relay.sqlite3"
    with sqlite3.connect(path) as db:  # a file made by older code: the index it had
        db.executescript(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, mailbox TEXT,"
            " sender TEXT, message_id TEXT, envelope BLOB, received_at REAL, acked_at REAL,"
            " UNIQUE (mailbox, sender, message_id));"
            "CREATE INDEX messages_pending ON messages (mailbox, acked_at, id);"
        )
    backend = SqliteBackend(path)
    await backend.start()
    await backend.close()
    with sqlite3.connect(path) as db:
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "messages_waiting" in indexes and "messages_pending" not in indexes
        for where in ("", " AND id>?"):
            query = (
                "SELECT message_id, sender, envelope, received_at FROM messages"
                f" WHERE mailbox=? AND acked_at IS NULL{where} ORDER BY id LIMIT ?"
            )
            args = ("box", 1, 10) if where else ("box", 10)
            (plan,) = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + query, args)]
            assert plan.startswith("SEARCH messages USING INDEX messages_waiting (mailbox=?")
