"""The relay backend on NATS JetStream (``nats-server -js``), for relays at scale.

Layout (``P`` is the configured prefix, default ``SW``; tokens are base64url):

* stream ``P_DIR``, one message per subject: ``p.dir.b.<agent>.<binding>`` the
  bundle and its pool names, ``p.dir.o.<agent>.<binding>.<pool>.<key id>`` a
  one-time prekey, ``p.dir.k.<agent>.<kp id>`` a KeyPackage. Handing a key out
  is deleting its message: the server deletes a sequence once, so of two
  concurrent fetches exactly one wins each key and the other takes the next.
* stream ``P_CARD``, one message per subject (a key-value bucket, as the
  directory): ``p.card.<agent>`` the agent's card; publishing replaces it, and
  the stream's message count is the number of cards. A stream of its own so
  that count is one ``stream_info`` whatever the directory holds.
* stream ``P_MBOX``: ``p.mb.<mailbox>.<message id>.<sender>``, one subject per
  message; an enqueue publishes with ``Nats-Expected-Last-Subject-Sequence: 0``
  so a second copy is refused atomically. An ack records a tombstone in stream
  ``P_ACKS`` (kept :data:`DEDUPE_RETENTION_SECONDS`, the relay's own record of
  accepted ids beyond JetStream's duplicate window) and deletes the message.
* stream ``P_GRP``: ``p.g.l.<group>`` the log, ``p.g.a.<group>`` the group's
  access records (:class:`GroupAccess`, immutable, one per change). Creating a
  group publishes its first record with ``Nats-Expected-Last-Subject-Sequence:
  0``. Every log entry names in its headers the access record in force after
  it (``Sw-Access``), the latest commit's epoch and position, and the entry
  count. An append reads the log's last entry and the record it names, checks
  the append (:func:`next_access`), publishes a new record if the access
  changes, then the entry with ``Nats-Expected-Last-Subject-Sequence`` set to
  the last entry's: JetStream's optimistic concurrency, so the check and the
  change land together or not at all (the loser re-reads and is checked
  again; a record left unreferenced by a lost race is deleted, and is inert).

The log sequence numbers are the stream's (increasing, not contiguous). The
mailbox depth is counted once per mailbox from the stream and then tracked by
this relay process (exact when one relay process uses the streams).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs

from sealwire.errors import ConfigurationError
from sealwire.relay.errors import LimitExceeded, RelayUnavailable
from sealwire.relay.errors import NotFoundError as GroupNotFound
from sealwire.relay.wire import Delivery, FetchedPrekeys, GroupLogEntry, b64d, b64e
from sealwire_relay._backend import (
    DEDUPE_RETENTION_SECONDS,
    GroupAccess,
    GroupAppend,
    next_access,
)

try:
    import nats
    import nats.errors
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
    from nats.js.errors import APIError, NotFoundError
except ImportError:  # pragma: no cover - the optional extra is not installed
    nats = None  # type: ignore[assignment]

__all__ = ["NatsBackend"]

# A fetch of more than this many messages streams them through an ephemeral
# consumer rather than asking for them one by one.
CONSUMER_FETCH_MIN = 8
CONSUMER_IDLE_SECONDS = 30.0
# Acknowledgements (and card look-ups) are carried out this many at a time.
ACK_PARALLEL = 32

WRONG_LAST_SEQUENCE = 10071  # JetStream error code: Nats-Expected-Last-Subject-Sequence failed
# Concurrent appends to one group retry their compare-and-set this many times
# before answering "busy"; each retry means another append succeeded.
MAX_APPEND_RETRIES = 200
# Depth counts are kept for this many mailboxes (recounted from the stream after).
MAX_DEPTH_CACHE = 100_000
EXPECT = "Nats-Expected-Last-Subject-Sequence"
# Access records read (immutable, by sequence number) kept in memory: one lookup
# saved per append; a miss costs one request.
MAX_ACCESS_CACHE = 10_000


@attrs.frozen
class _Msg:
    seq: int
    subject: str
    data: bytes
    headers: Mapping[str, str]


class NatsBackend:
    """Relay storage in JetStream streams on ``servers`` (see the module docstring)."""

    def __init__(self, servers: Sequence[str], *, prefix: str = "SW") -> None:
        if nats is None:
            raise ConfigurationError("the nats backend needs nats-py: pip install 'sealwire[nats]'")
        if not prefix.isalnum():
            raise ConfigurationError("the nats prefix must be alphanumeric")
        self._servers = list(servers)
        self._p = prefix.lower()
        self._s = prefix.upper()
        self._nc: Any = None
        self._js: Any = None
        self._depth: dict[str, int] = {}
        self._floor: dict[str, int] = {}
        self._records: dict[int, GroupAccess] = {}

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> NatsBackend:
        """Options: ``servers`` (list of ``nats://`` URLs), ``prefix`` (stream names)."""
        unknown = set(options) - {"servers", "prefix"}
        if unknown:
            raise ConfigurationError(f"unknown nats relay options: {sorted(unknown)}")
        servers = options.get("servers", ["nats://127.0.0.1:4222"])
        if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
            raise ConfigurationError("nats servers must be a list of URLs")
        return cls(servers, prefix=str(options.get("prefix", "SW")))

    async def start(self) -> None:
        if self._nc is not None:
            return
        try:
            self._nc = await nats.connect(
                servers=self._servers, connect_timeout=5, max_reconnect_attempts=-1
            )
        except (OSError, nats.errors.Error) as exc:
            raise RelayUnavailable(f"cannot reach NATS at {self._servers}: {exc!r}") from None
        self._js = self._nc.jetstream()
        streams = [
            (f"{self._s}_DIR", f"{self._p}.dir.>", 1, 0.0),
            (f"{self._s}_CARD", f"{self._p}.card.>", 1, 0.0),
            (f"{self._s}_MBOX", f"{self._p}.mb.>", -1, 0.0),
            (f"{self._s}_ACKS", f"{self._p}.ack.>", 1, float(DEDUPE_RETENTION_SECONDS)),
            (f"{self._s}_GRP", f"{self._p}.g.>", -1, 0.0),
        ]
        for name, subject, per_subject, max_age in streams:
            config = StreamConfig(
                name=name,
                subjects=[subject],
                storage=StorageType.FILE,
                max_msgs_per_subject=per_subject,
                max_age=max_age,
            )
            try:
                await self._js.add_stream(config)
            except APIError:
                await self._js.update_stream(config)

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()
            self._nc = self._js = None

    # -- primitives -----------------------------------------------------------------

    @asynccontextmanager
    async def _io(self) -> AsyncIterator[None]:
        if self._js is None:
            raise ConfigurationError("relay backend not started")
        try:
            yield
        except (APIError, nats.errors.Error, TimeoutError) as exc:
            raise RelayUnavailable(f"NATS request failed: {type(exc).__name__}") from None

    async def _last(self, stream: str, subject: str) -> Any:
        try:
            return await self._js.get_last_msg(stream, subject)
        except NotFoundError:
            return None

    async def _next(self, stream: str, subject: str, seq: int) -> Any:
        try:
            return await self._js.get_msg(stream, seq=max(seq, 1), subject=subject, next=True)
        except NotFoundError:
            return None

    async def _put_new(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> bool:
        """Publish unless the subject holds a message; False when it does."""
        return await self._put(subject, data, 0, headers) is not None

    async def _put(
        self, subject: str, data: bytes, expect: int, headers: dict[str, str] | None = None
    ) -> int | None:
        """Publish if the subject's last sequence is ``expect``; the new sequence or None."""
        try:
            ack = await self._js.publish(
                subject, data, headers={EXPECT: str(expect), **(headers or {})}
            )
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                return None
            raise
        return int(ack.seq)

    async def _take(self, stream: str, subject: str) -> Any:
        """Delete and return the first message on ``subject`` (wildcards allowed) or None."""
        seq = 1
        while True:
            msg = await self._next(stream, subject, seq)
            if msg is None:
                return None
            try:
                await self._js.delete_msg(stream, msg.seq)
                return msg
            except APIError:
                seq = msg.seq + 1  # a concurrent fetch took it: try the next one

    async def _count(self, stream: str, subject: str) -> int:
        info = await self._js.stream_info(stream, subjects_filter=subject)
        return len(info.state.subjects or {})

    # -- prekey directory -------------------------------------------------------------

    def _dir(self, *tokens: str) -> str:
        return ".".join((f"{self._p}.dir", *tokens))

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
        stream, b = f"{self._s}_DIR", b64e(binding.encode())
        async with self._io():
            last = await self._last(stream, self._dir("b", agent_id, b))
            pools = set(json.loads(last.data)["pools"]) if last is not None else set()
            pools |= set(one_time)
            if len(pools) > max_pools:
                raise LimitExceeded("prekeys", f"more than {max_pools} one-time prekey pools")
            for pool, keys in one_time.items():
                have = await self._count(
                    stream, self._dir("o", agent_id, b, b64e(pool.encode()), "*")
                )
                if have + len(keys) > max_per_pool:
                    raise LimitExceeded("prekeys", f"pool {pool!r} over {max_per_pool} keys")
            for pool, keys in one_time.items():
                for kid, blob in keys.items():
                    subject = self._dir("o", agent_id, b, b64e(pool.encode()), b64e(kid.encode()))
                    await self._put_new(subject, blob)
            record = {"bundle": b64e(bundle), "pools": sorted(pools)}
            await self._js.publish(self._dir("b", agent_id, b), json.dumps(record).encode())

    async def fetch_prekeys(self, agent_id: str, binding: str) -> FetchedPrekeys | None:
        stream, b = f"{self._s}_DIR", b64e(binding.encode())
        async with self._io():
            last = await self._last(stream, self._dir("b", agent_id, b))
            if last is None:
                return None
            record = json.loads(last.data)
            taken: dict[str, tuple[str, bytes] | None] = {}
            for pool in record["pools"]:
                msg = await self._take(
                    stream, self._dir("o", agent_id, b, b64e(pool.encode()), "*")
                )
                kid = None if msg is None else b64d(msg.subject.rsplit(".", 1)[1], "key_id")
                taken[pool] = (
                    None if msg is None or kid is None else (kid.decode(), msg.data or b"")
                )
            return FetchedPrekeys(b64d(record["bundle"], "bundle"), taken)

    async def count_prekeys(self, agent_id: str, binding: str) -> dict[str, int]:
        stream, b = f"{self._s}_DIR", b64e(binding.encode())
        async with self._io():
            last = await self._last(stream, self._dir("b", agent_id, b))
            pools = json.loads(last.data)["pools"] if last is not None else []
            return {
                p: await self._count(stream, self._dir("o", agent_id, b, b64e(p.encode()), "*"))
                for p in pools
            }

    # -- KeyPackage directory -----------------------------------------------------------

    async def publish_key_package(
        self, agent_id: str, key_package_id: str, key_package: bytes, *, max_count: int
    ) -> None:
        async with self._io():
            if await self.count_key_packages(agent_id) >= max_count:
                raise LimitExceeded("key_packages", f"more than {max_count} KeyPackages")
            await self._put_new(
                self._dir("k", agent_id, b64e(key_package_id.encode())), key_package
            )

    async def fetch_key_package(self, agent_id: str) -> bytes | None:
        async with self._io():
            msg = await self._take(f"{self._s}_DIR", self._dir("k", agent_id, "*"))
            return None if msg is None else bytes(msg.data or b"")

    async def count_key_packages(self, agent_id: str) -> int:
        async with self._io():
            return await self._count(f"{self._s}_DIR", self._dir("k", agent_id, "*"))

    # -- card directory ---------------------------------------------------------------

    def _card(self, agent_id: str) -> str:
        return f"{self._p}.card.{agent_id}"

    async def put_card(self, agent_id: str, card_json: bytes, *, max_count: int) -> None:
        stream, subject = f"{self._s}_CARD", self._card(agent_id)
        async with self._io():
            if await self._last(stream, subject) is None:
                # Concurrent first publishes by different agents may each pass
                # this check: the bound may be overshot by as many, never more.
                info = await self._js.stream_info(stream)
                if int(info.state.messages or 0) >= max_count:
                    raise LimitExceeded("cards", f"the card directory holds {max_count} cards")
            await self._js.publish(subject, card_json)

    async def get_cards(self, agent_ids: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        async with self._io():
            for i in range(0, len(agent_ids), ACK_PARALLEL):
                chunk = agent_ids[i : i + ACK_PARALLEL]
                msgs = await asyncio.gather(
                    *(self._last(f"{self._s}_CARD", self._card(a)) for a in chunk)
                )
                for agent_id, msg in zip(chunk, msgs, strict=True):
                    if msg is not None:
                        found[agent_id] = bytes(msg.data or b"")
        return found

    # -- mailboxes --------------------------------------------------------------------

    def _mb(self, mailbox: str, *tokens: str) -> str:
        return ".".join((f"{self._p}.mb", b64e(mailbox.encode()), *tokens))

    def _tomb(self, mailbox: str, message_id: str, sender: str) -> str:
        return f"{self._p}.ack.{b64e(mailbox.encode())}.{b64e(message_id.encode())}.{sender}"

    async def _acked(self, mailbox: str, message_id: str, sender: str) -> bool:
        tomb = self._tomb(mailbox, message_id, sender)
        return await self._last(f"{self._s}_ACKS", tomb) is not None

    async def _depth_of(self, mailbox: str) -> int:
        if mailbox not in self._depth:
            if len(self._depth) >= MAX_DEPTH_CACHE:
                self._depth.clear()
            self._depth[mailbox] = await self._count(f"{self._s}_MBOX", self._mb(mailbox, ">"))
        return self._depth[mailbox]

    async def enqueue(self, mailbox: str, delivery: Delivery, *, max_depth: int) -> bool:
        mid, sender = delivery.message_id, delivery.sender
        subject = self._mb(mailbox, b64e(mid.encode()), sender)
        async with self._io():
            if await self._acked(mailbox, mid, sender):
                return False
            if await self._last(f"{self._s}_MBOX", subject) is not None:
                return False  # pending already: a duplicate, even when the mailbox is full
            if await self._depth_of(mailbox) >= max_depth:
                raise LimitExceeded("mailbox_depth", f"mailbox holds {max_depth} messages")
            headers = {"Sw-At": repr(delivery.received_at)}
            seq = await self._put(subject, delivery.envelope, 0, headers)
            if seq is None:
                return False
            if await self._acked(mailbox, mid, sender):
                # An ack of an earlier copy raced with this enqueue: undo it.
                await self._js.delete_msg(f"{self._s}_MBOX", seq)
                return False
            self._depth[mailbox] = self._depth.get(mailbox, 0) + 1
            return True

    async def _pending(self, mailbox: str, subject: str, limit: int) -> list[_Msg]:
        """The first ``limit`` messages on ``subject`` (oldest first)."""
        start = self._floor.get(mailbox, 1)
        if limit > CONSUMER_FETCH_MIN:
            return await self._pending_by_consumer(subject, start, limit)
        found: list[_Msg] = []
        while len(found) < limit:
            msg = await self._next(f"{self._s}_MBOX", subject, start)
            if msg is None:
                break
            found.append(_Msg(msg.seq, msg.subject, msg.data or b"", msg.headers or {}))
            start = msg.seq + 1
        return found

    async def _pending_by_consumer(self, subject: str, start: int, limit: int) -> list[_Msg]:
        # One ephemeral consumer streams a whole batch: three round trips instead
        # of one per message. It never acks and is deleted at once (the server
        # drops it by itself after CONSUMER_IDLE_SECONDS should we die first).
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start, filter_subject=subject, mem_storage=True,
            inactive_threshold=CONSUMER_IDLE_SECONDS,
        )  # fmt: skip
        sub = await self._js.pull_subscribe(subject, stream=f"{self._s}_MBOX", config=config)
        name: str | None = None
        try:
            info = await sub.consumer_info()
            name = info.name
            want = min(limit, int(info.num_pending or 0))
            msgs = await sub.fetch(want, timeout=5) if want else []
        finally:
            await sub.unsubscribe()
            if name is not None:
                with contextlib.suppress(APIError, nats.errors.Error):
                    await self._js.delete_consumer(f"{self._s}_MBOX", name)
        return [
            _Msg(m.metadata.sequence.stream, m.subject, m.data or b"", m.headers or {})
            for m in msgs
        ]

    async def fetch(self, mailbox: str, limit: int) -> list[Delivery]:
        async with self._io():
            msgs = await self._pending(mailbox, self._mb(mailbox, ">"), limit)
            if msgs and len(self._floor) < MAX_DEPTH_CACHE:
                # Messages are only ever deleted below the first pending one, so
                # later scans of this mailbox may start there.
                self._floor[mailbox] = msgs[0].seq
        out = []
        for msg in msgs:
            _, _, mid, sender = msg.subject.rsplit(".", 3)
            out.append(
                Delivery(
                    message_id=b64d(mid, "message_id").decode(),
                    sender=sender,
                    envelope=bytes(msg.data),
                    received_at=float(msg.headers.get("Sw-At", 0.0)),
                )
            )
        return out

    async def ack(self, mailbox: str, keys: Sequence[tuple[str, str]]) -> int:
        removed = 0
        async with self._io():
            for i in range(0, len(keys), ACK_PARALLEL):
                chunk = keys[i : i + ACK_PARALLEL]
                counts = await asyncio.gather(*(self._ack_one(mailbox, *key) for key in chunk))
                removed += sum(counts)
            if mailbox in self._depth:
                self._depth[mailbox] = max(0, self._depth[mailbox] - removed)
        return removed

    async def _ack_one(self, mailbox: str, sender: str, mid: str) -> int:
        removed = 0
        copies = await self._pending(mailbox, self._mb(mailbox, b64e(mid.encode()), sender), 1)
        for msg in copies:
            # Tombstone first, then delete: an enqueue racing with us sees one of them.
            await self._js.publish(self._tomb(mailbox, mid, sender), b"")
            try:
                await self._js.delete_msg(f"{self._s}_MBOX", msg.seq)
            except APIError:
                continue  # acknowledged concurrently
            removed += 1
        return removed

    # -- groups ------------------------------------------------------------------------

    def _g(self, kind: str, group_id: bytes) -> str:
        return f"{self._p}.g.{kind}.{b64e(group_id)}"

    async def _record(self, seq: int) -> GroupAccess:
        record = self._records.get(seq)
        if record is None:
            msg = await self._js.get_msg(f"{self._s}_GRP", seq=seq)
            record = GroupAccess.from_json(bytes(msg.data or b""))
            if len(self._records) >= MAX_ACCESS_CACHE:
                self._records.clear()
            self._records[seq] = record
        return record

    async def _access(self, group_id: bytes, last: Any) -> tuple[GroupAccess, int] | None:
        """The access after the log entry ``last`` (None: the log is empty) and the
        sequence number of its record; None for a group never created."""
        head = (last.headers or {}) if last is not None else {}
        if "Sw-Access" in head:
            record_seq = int(head["Sw-Access"])
        else:
            first = await self._next(f"{self._s}_GRP", self._g("a", group_id), 1)
            if first is None:
                return None
            record_seq = first.seq
        access = await self._record(record_seq)
        if last is not None:
            if head.get("Sw-Kind") == "commit":
                commit_seq: int | None = int(last.seq)
            else:
                commit_seq = int(head["Sw-Commit-Seq"]) if head.get("Sw-Commit-Seq") else None
            access = attrs.evolve(access, commit_seq=commit_seq)
        return access, record_seq

    async def group_access(self, group_id: bytes) -> GroupAccess | None:
        async with self._io():
            last = await self._last(f"{self._s}_GRP", self._g("l", group_id))
            found = await self._access(group_id, last)
        return None if found is None else found[0]

    async def create_group(self, group_id: bytes, members: frozenset[str]) -> GroupAccess:
        async with self._io():
            access = GroupAccess(members=members, previous=members)
            if not await self._put_new(self._g("a", group_id), access.to_json()):
                last = await self._last(f"{self._s}_GRP", self._g("l", group_id))
                found = await self._access(group_id, last)
                assert found is not None  # the subject holds a record
                return found[0]
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
        subject = self._g("l", group_id)
        async with self._io():
            for _ in range(MAX_APPEND_RETRIES):
                last = await self._last(f"{self._s}_GRP", subject)
                found = await self._access(group_id, last)
                if found is None:
                    raise GroupNotFound("no such group")
                access, record_seq = found
                count = int((last.headers or {}).get("Sw-Count", 0)) if last else 0
                if count >= max_entries:
                    raise LimitExceeded("group_log", f"group log holds {max_entries} entries")
                new = next_access(access, entry, request, max_members=max_members)
                fresh: int | None = None
                if attrs.evolve(new, commit_seq=None) != attrs.evolve(access, commit_seq=None):
                    stored = attrs.evolve(new, commit_seq=None)
                    ack = await self._js.publish(self._g("a", group_id), stored.to_json())
                    fresh = record_seq = int(ack.seq)
                    self._records[record_seq] = stored
                commit_seq = "" if access.commit_seq is None else str(access.commit_seq)
                headers = {
                    "Sw-Kind": entry.kind,
                    "Sw-Epoch": str(entry.epoch),
                    "Sw-Sender": entry.sender,
                    "Sw-At": repr(entry.received_at),
                    "Sw-Count": str(count + 1),
                    "Sw-Last-Commit": "" if new.last_commit is None else str(new.last_commit),
                    "Sw-Commit-Seq": "" if entry.kind == "commit" else commit_seq,
                    "Sw-Access": str(record_seq),
                }
                seq = await self._put(subject, entry.message, last.seq if last else 0, headers)
                if seq is not None:
                    return seq
                if fresh is not None:  # never referenced: inert, and deleted
                    self._records.pop(fresh, None)
                    with contextlib.suppress(APIError):
                        await self._js.delete_msg(f"{self._s}_GRP", fresh)
        raise RelayUnavailable("group log too busy; retry")

    async def fetch_group_log(self, group_id: bytes, after: int, limit: int) -> list[GroupLogEntry]:
        out: list[GroupLogEntry] = []
        seq = after + 1
        async with self._io():
            while len(out) < limit:
                msg = await self._next(f"{self._s}_GRP", self._g("l", group_id), seq)
                if msg is None:
                    break
                head = msg.headers or {}
                out.append(
                    GroupLogEntry(
                        seq=msg.seq,
                        kind=head.get("Sw-Kind", "application"),
                        epoch=int(head.get("Sw-Epoch", 0)),
                        sender=head.get("Sw-Sender", ""),
                        message=bytes(msg.data or b""),
                        received_at=float(head.get("Sw-At", 0.0)),
                    )
                )
                seq = msg.seq + 1
        return out
