"""The embedded relay backend: one SQLite file (WAL), the default.

Each operation is one short transaction run to completion on the event loop
thread (no await inside), so operations are atomic with respect to each other
in this process, and ``BEGIN IMMEDIATE`` makes them atomic against another
process sharing the file. WAL with ``synchronous=NORMAL`` survives the relay
being killed: a committed transaction is in the WAL before the answer is sent.
The WAL is checkpointed in a worker thread, not by the commits
(:mod:`sealwire_relay._sqlite_checkpoints`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from sealwire.errors import ConfigurationError
from sealwire.relay.errors import LimitExceeded, NotFoundError
from sealwire.relay.wire import Delivery, FetchedPrekeys, GroupLogEntry
from sealwire_relay._backend import GroupAccess, GroupAppend, next_access
from sealwire_relay._limits import DEDUPE_RETENTION_SECONDS
from sealwire_relay._sqlite_checkpoints import WalCheckpointer

__all__ = ["CommitListener", "SqliteBackend"]

# Called right after a commit that stored deliveries (see SqliteBackend.follow_commits):
# the backend's writer epoch, then the (mailbox, delivery) pairs stored, in order.
CommitListener = Callable[[int, Sequence[tuple[str, Delivery]]], None]

# Version 1 gained the ``cards`` table and the ``messages_acked`` index later:
# additive (a table, a count in ``meta`` that defaults to 0, an index), created by
# the schema script on an older file and ignored by older code, so the version did
# not change. So did the partial index ``messages_waiting`` (the pending messages of
# a mailbox in arrival order), which replaced ``messages_pending`` (every message,
# acknowledged or not, by mailbox and ``acked_at``): an acknowledgement now only
# removes an entry instead of moving it, and the index holds only what waits, not
# a week of acknowledged ids (older code builds its index again).
SCHEMA_VERSION = 1
# Acknowledged ids older than the retention are pruned once per this many acks.
PRUNE_EVERY_ACKS = 1_000
# The prune's two statements, each by an index (a relay keeps a week of acknowledged
# ids: a scan of them per prune would grow with the traffic): the newest message by
# rowid (its arrival stands for now: never later than the newest arrival, so the
# prune only ever keeps more), then the acknowledged older than the retention by
# the partial index ``messages_acked``.
NEWEST_ARRIVAL = "SELECT received_at FROM messages ORDER BY id DESC LIMIT 1"
PRUNE_ACKED = "DELETE FROM messages WHERE acked_at IS NOT NULL AND acked_at < ?"
# The page size of a new file (an existing one keeps its own), whatever the build's
# default. Larger pages cut the frames of large envelopes (8 KiB: 16 KiB envelopes
# 0.8-0.97 and 64 KiB 0.7 of the CPU) but rewrite and split leaf pages holding
# envelopes inline: 4 KiB ones, common sealed A2A frames, cost 1.8-2.2 times as much
# (benchmarks/bench_relay_sqlite.py).
PAGE_SIZE = 4096
# Mailbox depths kept in memory between commits (a few bytes each): the active
# mailboxes of a busy relay fit; past it the cache starts again (reads refill it).
MAX_CACHED_DEPTHS = 100_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bundles (
    agent_id TEXT, binding TEXT, bundle BLOB NOT NULL, pools TEXT NOT NULL,
    PRIMARY KEY (agent_id, binding));
CREATE TABLE IF NOT EXISTS one_time (
    id INTEGER PRIMARY KEY, agent_id TEXT, binding TEXT, pool TEXT, key_id TEXT, blob BLOB,
    UNIQUE (agent_id, binding, pool, key_id));
CREATE TABLE IF NOT EXISTS key_packages (
    id INTEGER PRIMARY KEY, agent_id TEXT, kp_id TEXT, kp BLOB, UNIQUE (agent_id, kp_id));
CREATE TABLE IF NOT EXISTS cards (agent_id TEXT PRIMARY KEY, card BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, mailbox TEXT, sender TEXT, message_id TEXT,
    envelope BLOB, received_at REAL, acked_at REAL,
    UNIQUE (mailbox, sender, message_id));
DROP INDEX IF EXISTS messages_pending;
CREATE INDEX IF NOT EXISTS messages_waiting ON messages (mailbox, id) WHERE acked_at IS NULL;
CREATE INDEX IF NOT EXISTS messages_acked ON messages (acked_at) WHERE acked_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS depths (mailbox TEXT PRIMARY KEY, pending INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS groups (group_id BLOB PRIMARY KEY, members TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS group_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, group_id BLOB, kind TEXT, epoch INTEGER,
    sender TEXT, message BLOB, received_at REAL);
CREATE INDEX IF NOT EXISTS group_log_by_group ON group_log (group_id, seq);
CREATE TABLE IF NOT EXISTS group_heads (
    group_id BLOB PRIMARY KEY, entries INTEGER NOT NULL, last_commit INTEGER);
CREATE TABLE IF NOT EXISTS group_access (group_id BLOB PRIMARY KEY, access BLOB NOT NULL);
DROP INDEX IF EXISTS one_commit_per_epoch;
"""
# ``group_access`` (who may use a group's log, :class:`GroupAccess`) replaced the
# member list of ``groups``, which is read for a group created by older code; the
# unique index "one commit per epoch" went: a commit that supersedes an invalid
# one shares its epoch, and the rule is :func:`next_access`, checked in the
# append's transaction.


class SqliteBackend:
    """Relay storage in one SQLite file (``path``; ``:memory:`` for tests)."""

    # Every operation runs to completion on the event loop (nothing else runs
    # meanwhile): the stream's committer gathers work before a commit instead.
    commits_on_loop = True

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._db: sqlite3.Connection | None = None
        self._acks = 0
        # Bumped whenever a transaction finds that another connection (another
        # relay process sharing the file) wrote since this one last looked: what
        # this process knows of the file in memory holds within one epoch only.
        self._epoch = 0
        self._data_version: int | None = None
        self._listeners: list[CommitListener] = []
        # ``depths`` rows as this connection last committed them: exact within
        # one writer epoch (nobody else wrote), so a commit reads a mailbox's
        # depth from here instead of SELECTing it; emptied when the epoch changes.
        self._depths: dict[str, int] = {}
        self._checkpoints: WalCheckpointer | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SqliteBackend:
        """Options: ``path`` (default ``relay.sqlite3`` in the working directory)."""
        unknown = set(options) - {"path"}
        if unknown:
            raise ConfigurationError(f"unknown sqlite relay options: {sorted(unknown)}")
        return cls(options.get("path", "relay.sqlite3"))

    async def start(self) -> None:
        if self._db is not None:
            return
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # a new file only (a file keeps its own)
        wal = db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"  # not in memory
        db.execute("PRAGMA synchronous=NORMAL")
        # Deleted content is zeroed where the page is written anyway, but freed pages are
        # not written again only to zero them (builds such as Debian's default to ON):
        # an acknowledged 16 KiB envelope cost four more page writes. The file only
        # ever holds ciphertext.
        db.execute("PRAGMA secure_delete=FAST")
        db.execute("PRAGMA busy_timeout=5000")
        if wal:  # checkpoints off the event loop (see _sqlite_checkpoints)
            db.execute("PRAGMA wal_autocheckpoint=0")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise ConfigurationError(f"relay database schema {row[0]} is not {SCHEMA_VERSION}")
        self._db = db
        if wal:
            page_size = db.execute("PRAGMA page_size").fetchone()[0]
            self._checkpoints = WalCheckpointer(self._path, page_size)
            self._checkpoints.start()

    async def close(self) -> None:
        if self._checkpoints is not None:
            await self._checkpoints.close()
            self._checkpoints = None
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        if db is None:
            raise ConfigurationError("relay backend not started")
        db.execute("BEGIN IMMEDIATE")
        try:
            # Changes when another connection committed since this one's previous
            # look (never for this connection's own commits): one cheap statement
            # per transaction, not per message.
            version = db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:
                self._data_version = version
                self._epoch += 1
                self._depths.clear()
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if self._checkpoints is not None:
            self._checkpoints.committed(db)

    def _count_acks(self, db: sqlite3.Connection, acks: int) -> None:
        """Count acknowledgements; every PRUNE_EVERY_ACKS, forget the acknowledged ids
        older than the retention (before the newest message's arrival)."""
        self._acks += acks
        if self._acks >= PRUNE_EVERY_ACKS:
            self._acks = 0
            row = db.execute(NEWEST_ARRIVAL).fetchone()
            if row is not None:
                db.execute(PRUNE_ACKED, (row[0] - DEDUPE_RETENTION_SECONDS,))

    # -- prekey directory ---------------------------------------------------

    async def publish_prekeys(
        self,
        agent_id: str,
        binding: str,
        bundle: bytes,
        one_time: Mapping[str, Mapping[str, bytes]],
        *,
        max_per_pool: int,
        max_pools: int,
    ) -> None:
        with self._tx() as db:
            row = db.execute(
                "SELECT pools FROM bundles WHERE agent_id=? AND binding=?", (agent_id, binding)
            ).fetchone()
            pools = sorted(set(json.loads(row[0]) if row else ()) | set(one_time))
            if len(pools) > max_pools:
                raise LimitExceeded("prekeys", f"more than {max_pools} one-time prekey pools")
            db.execute(
                "INSERT OR REPLACE INTO bundles VALUES (?, ?, ?, ?)",
                (agent_id, binding, bundle, json.dumps(pools)),
            )
            for pool, keys in one_time.items():
                db.executemany(
                    "INSERT OR IGNORE INTO one_time (agent_id, binding, pool, key_id, blob)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(agent_id, binding, pool, kid, blob) for kid, blob in keys.items()],
                )
                if self._pool_size(db, agent_id, binding, pool) > max_per_pool:
                    raise LimitExceeded("prekeys", f"pool {pool!r} over {max_per_pool} keys")

    @staticmethod
    def _pool_size(db: sqlite3.Connection, agent_id: str, binding: str, pool: str) -> int:
        row = db.execute(
            "SELECT count(*) FROM one_time WHERE agent_id=? AND binding=? AND pool=?",
            (agent_id, binding, pool),
        ).fetchone()
        return int(row[0])

    async def fetch_prekeys(self, agent_id: str, binding: str) -> FetchedPrekeys | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT bundle, pools FROM bundles WHERE agent_id=? AND binding=?",
                (agent_id, binding),
            ).fetchone()
            if row is None:
                return None
            taken: dict[str, tuple[str, bytes] | None] = {}
            for pool in json.loads(row[1]):
                key = db.execute(
                    "SELECT id, key_id, blob FROM one_time WHERE agent_id=? AND binding=?"
                    " AND pool=? ORDER BY id LIMIT 1",
                    (agent_id, binding, pool),
                ).fetchone()
                if key is not None:
                    db.execute("DELETE FROM one_time WHERE id=?", (key[0],))
                taken[pool] = None if key is None else (key[1], bytes(key[2]))
            return FetchedPrekeys(bytes(row[0]), taken)

    async def count_prekeys(self, agent_id: str, binding: str) -> dict[str, int]:
        with self._tx() as db:
            row = db.execute(
                "SELECT pools FROM bundles WHERE agent_id=? AND binding=?", (agent_id, binding)
            ).fetchone()
            pools = json.loads(row[0]) if row else []
            return {p: self._pool_size(db, agent_id, binding, p) for p in pools}

    # -- KeyPackage directory -----------------------------------------------

    async def publish_key_package(
        self, agent_id: str, key_package_id: str, key_package: bytes, *, max_count: int
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO key_packages (agent_id, kp_id, kp) VALUES (?, ?, ?)",
                (agent_id, key_package_id, key_package),
            )
            if self._kp_count(db, agent_id) > max_count:
                raise LimitExceeded("key_packages", f"more than {max_count} KeyPackages")

    @staticmethod
    def _kp_count(db: sqlite3.Connection, agent_id: str) -> int:
        row = db.execute("SELECT count(*) FROM key_packages WHERE agent_id=?", (agent_id,))
        return int(row.fetchone()[0])

    async def fetch_key_package(self, agent_id: str) -> bytes | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT id, kp FROM key_packages WHERE agent_id=? ORDER BY id LIMIT 1", (agent_id,)
            ).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM key_packages WHERE id=?", (row[0],))
            return bytes(row[1])

    async def count_key_packages(self, agent_id: str) -> int:
        with self._tx() as db:
            return self._kp_count(db, agent_id)

    # -- card directory ---------------------------------------------------------

    async def put_card(self, agent_id: str, card_json: bytes, *, max_count: int) -> None:
        # The number of cards is kept in ``meta``: count(*) over a million rows
        # on every publish would cost more than the publish itself.
        with self._tx() as db:
            if db.execute("SELECT 1 FROM cards WHERE agent_id=?", (agent_id,)).fetchone():
                db.execute("UPDATE cards SET card=? WHERE agent_id=?", (card_json, agent_id))
                return
            row = db.execute("SELECT value FROM meta WHERE key='cards'").fetchone()
            count = int(row[0]) if row else 0
            if count >= max_count:
                raise LimitExceeded("cards", f"the card directory holds {max_count} cards")
            db.execute("INSERT INTO cards VALUES (?, ?)", (agent_id, card_json))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('cards', ?)", (str(count + 1),))

    async def get_cards(self, agent_ids: Sequence[str]) -> dict[str, bytes]:
        ids = list(agent_ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._tx() as db:
            rows = db.execute(
                f"SELECT agent_id, card FROM cards WHERE agent_id IN ({marks})", ids
            ).fetchall()
        return {r[0]: bytes(r[1]) for r in rows}

    # -- mailboxes ----------------------------------------------------------

    async def enqueue(self, mailbox: str, delivery: Delivery, *, max_depth: int) -> bool:
        _, (stored,) = await self.commit_mailbox_batch(
            [], [(mailbox, delivery)], max_depth=max_depth
        )
        if isinstance(stored, LimitExceeded):
            raise stored
        return stored

    async def fetch(self, mailbox: str, limit: int) -> list[Delivery]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT message_id, sender, envelope, received_at FROM messages"
                " WHERE mailbox=? AND acked_at IS NULL ORDER BY id LIMIT ?",
                (mailbox, limit),
            ).fetchall()
        return [
            Delivery(message_id=r[0], sender=r[1], envelope=bytes(r[2]), received_at=r[3])
            for r in rows
        ]

    async def ack(self, mailbox: str, keys: Sequence[tuple[str, str]]) -> int:
        # An acknowledged message keeps its id (and drops its envelope) so that a
        # late retry of the same message is still recognised as a duplicate.
        with self._tx() as db:
            removed = 0
            for sender, message_id in keys:
                # By the unique (mailbox, sender, message_id) index: one row, never a scan.
                cur = db.execute(
                    "UPDATE messages SET acked_at=received_at, envelope=x''"
                    " WHERE mailbox=? AND sender=? AND message_id=? AND acked_at IS NULL",
                    (mailbox, sender, message_id),
                )
                removed += cur.rowcount
            db.execute(
                "UPDATE depths SET pending = max(0, pending - ?) WHERE mailbox=?",
                (removed, mailbox),
            )
            self._depths.pop(mailbox, None)
            self._count_acks(db, len(keys))
            return removed

    async def fetch_after(
        self, mailbox: str, after: tuple[str, str] | None, limit: int
    ) -> list[Delivery]:
        return self.read_after(mailbox, after, limit)[0]

    def read_after(
        self, mailbox: str, after: tuple[str, str] | None, limit: int
    ) -> tuple[list[Delivery], int]:
        """:meth:`fetch_after`, synchronously, with the writer epoch it read in.

        With :meth:`follow_commits`, a reader knows it has seen every delivery
        of the mailbox: those committed before this call are in its answer, and
        those committed after reach the listeners, in commit order, with the
        same epoch as long as no other connection wrote to the file.
        """
        with self._tx() as db:
            start = None
            if after is not None:
                # By the unique (mailbox, sender, message_id) index; an acknowledged
                # row keeps its id, so the position survives the ack.
                start = db.execute(
                    "SELECT id FROM messages WHERE mailbox=? AND sender=? AND message_id=?",
                    (mailbox, after[0], after[1]),
                ).fetchone()
            rows = db.execute(
                "SELECT message_id, sender, envelope, received_at FROM messages"
                " WHERE mailbox=? AND acked_at IS NULL AND id>? ORDER BY id LIMIT ?",
                (mailbox, start[0] if start else 0, limit),
            ).fetchall()
        deliveries = [
            Delivery(message_id=r[0], sender=r[1], envelope=bytes(r[2]), received_at=r[3])
            for r in rows
        ]
        return deliveries, self._epoch

    def follow_commits(self, listener: CommitListener) -> None:
        """Call ``listener(epoch, stored)`` after each commit that stored deliveries,
        synchronously, before anything else runs on the event loop: listeners see
        this connection's commits in commit order. A changed epoch means another
        connection wrote in between: what the listener was told may have gaps."""
        self._listeners.append(listener)

    async def commit_mailbox_batch(
        self,
        acks: Sequence[tuple[str, str, str]],
        enqueues: Sequence[tuple[str, Delivery]],
        *,
        max_depth: int,
    ) -> tuple[list[bool], list[bool | LimitExceeded]]:
        # One transaction for the whole batch: one commit (one WAL append) where
        # one per message would cost a commit each.
        known = self._depths
        with self._tx() as db:
            # This batch's depths, into ``known`` once committed (a rollback
            # leaves ``known`` as the file is).
            depths: dict[str, int] = {}

            def depth(mailbox: str) -> int:
                if mailbox not in depths:
                    cached = known.get(mailbox)
                    if cached is None:
                        row = db.execute(
                            "SELECT pending FROM depths WHERE mailbox=?", (mailbox,)
                        ).fetchone()
                        cached = row[0] if row else 0
                    depths[mailbox] = cached
                return depths[mailbox]

            acked: list[bool] = []
            for mailbox, sender, message_id in acks:
                cur = db.execute(
                    "UPDATE messages SET acked_at=received_at, envelope=x''"
                    " WHERE mailbox=? AND sender=? AND message_id=? AND acked_at IS NULL",
                    (mailbox, sender, message_id),
                )
                acked.append(cur.rowcount > 0)
                if cur.rowcount:
                    depths[mailbox] = max(0, depth(mailbox) - cur.rowcount)
            stored: list[bool | LimitExceeded] = []
            for mailbox, d in enqueues:
                if depth(mailbox) >= max_depth:
                    seen = db.execute(  # a retry of a stored message is no excess
                        "SELECT 1 FROM messages WHERE mailbox=? AND sender=? AND message_id=?",
                        (mailbox, d.sender, d.message_id),
                    ).fetchone()
                    stored.append(
                        False
                        if seen is not None
                        else LimitExceeded("mailbox_depth", f"mailbox holds {max_depth} messages")
                    )
                    continue
                # By the unique (mailbox, sender, message_id) index: a duplicate is ignored.
                cur = db.execute(
                    "INSERT OR IGNORE INTO messages"
                    " (mailbox, sender, message_id, envelope, received_at) VALUES (?, ?, ?, ?, ?)",
                    (mailbox, d.sender, d.message_id, d.envelope, d.received_at),
                )
                depths[mailbox] += cur.rowcount
                stored.append(cur.rowcount > 0)
            changed = [(m, n) for m, n in depths.items() if known.get(m) != n]
            if changed:
                db.executemany("INSERT OR REPLACE INTO depths VALUES (?, ?)", changed)
            self._count_acks(db, len(acks))
        if len(known) + len(depths) > MAX_CACHED_DEPTHS:
            known.clear()
        known.update(depths)
        if self._listeners:
            fresh = [e for e, s in zip(enqueues, stored, strict=True) if s is True]
            if fresh:
                for listener in self._listeners:
                    listener(self._epoch, fresh)
        return acked, stored

    # -- groups ---------------------------------------------------------------

    @staticmethod
    def _access(db: sqlite3.Connection, group_id: bytes) -> GroupAccess | None:
        row = db.execute("SELECT access FROM group_access WHERE group_id=?", (group_id,))
        found = row.fetchone()
        if found is not None:
            return GroupAccess.from_json(bytes(found[0]))
        old = db.execute("SELECT members FROM groups WHERE group_id=?", (group_id,)).fetchone()
        if old is None:
            return None
        members = frozenset(json.loads(old[0]))
        head = db.execute(
            "SELECT last_commit, (SELECT max(seq) FROM group_log WHERE group_id=? AND kind="
            "'commit') FROM group_heads WHERE group_id=?",
            (group_id, group_id),
        ).fetchone()
        last, seq = head if head else (None, None)
        return GroupAccess(members=members, previous=members, last_commit=last, commit_seq=seq)

    async def group_access(self, group_id: bytes) -> GroupAccess | None:
        with self._tx() as db:
            return self._access(db, group_id)

    async def create_group(self, group_id: bytes, members: frozenset[str]) -> GroupAccess:
        with self._tx() as db:
            access = self._access(db, group_id)
            if access is None:
                access = GroupAccess(members=members, previous=members)
                db.execute("INSERT INTO group_access VALUES (?, ?)", (group_id, access.to_json()))
            return access

    async def append_group(
        self,
        group_id: bytes,
        entry: GroupLogEntry,
        request: GroupAppend,
        *,
        max_entries: int,
        max_members: int,
    ) -> int:
        with self._tx() as db:
            access = self._access(db, group_id)
            if access is None:
                raise NotFoundError("no such group")
            new = next_access(access, entry, request, max_members=max_members)
            head = db.execute(
                "SELECT entries FROM group_heads WHERE group_id=?", (group_id,)
            ).fetchone()
            count = head[0] if head else 0
            if count >= max_entries:
                raise LimitExceeded("group_log", f"group log holds {max_entries} entries")
            cur = db.execute(
                "INSERT INTO group_log (group_id, kind, epoch, sender, message, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (group_id, entry.kind, entry.epoch, entry.sender, entry.message, entry.received_at),
            )
            seq = cur.lastrowid
            assert seq is not None
            if entry.kind == "commit":
                new = attrs.evolve(new, commit_seq=seq)
            db.execute(
                "INSERT OR REPLACE INTO group_heads VALUES (?, ?, ?)",
                (group_id, count + 1, new.last_commit),
            )
            if new != access:
                db.execute(
                    "INSERT OR REPLACE INTO group_access VALUES (?, ?)",
                    (group_id, new.to_json()),
                )
            return seq

    async def fetch_group_log(self, group_id: bytes, after: int, limit: int) -> list[GroupLogEntry]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT seq, kind, epoch, sender, message, received_at FROM group_log"
                " WHERE group_id=? AND seq>? ORDER BY seq LIMIT ?",
                (group_id, after, limit),
            ).fetchall()
        return [
            GroupLogEntry(
                seq=r[0], kind=r[1], epoch=r[2], sender=r[3], message=bytes(r[4]), received_at=r[5]
            )
            for r in rows
        ]
