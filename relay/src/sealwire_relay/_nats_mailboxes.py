"""The mailboxes of the JetStream relay backend: enqueue, fetch and ack on stream
``P_MBOX`` (``p.mb.<mailbox>.<message id>.<sender>``, one subject per message),
with the record of acknowledged ids in stream ``P_ACKS``.

An enqueue is one publish, with ``Nats-Expected-Last-Subject-Sequence: 0`` (a
second copy is refused atomically while the first is pending, however old) and
``Nats-Msg-Id`` (a retry inside JetStream's duplicate window is a duplicate even
once the first copy was acknowledged); beyond the window the tombstone the ack
left in ``P_ACKS`` (kept ``DEDUPE_RETENTION_SECONDS``) says so: it is read
by a direct get at the same time as the publish, and a copy it condemns is
deleted again. An ack deletes by the stream sequence this process saw when it
stored or fetched the message, and writes the tombstone at the same time. A
fetch uses direct gets, no consumer (see :meth:`NatsMailboxes._pending`).

The depth is counted once per mailbox from the stream and then kept by this
process, reserved before each publish; with ``shared`` the server keeps it
instead (:mod:`sealwire_relay._nats_slots`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import attrs

from sealwire.relay.errors import LimitExceeded
from sealwire.relay.wire import Delivery, b64d, b64e
from sealwire_relay._nats_slots import SLOT_HEADER, NatsSlots, named_slot
from sealwire_relay._nats_streams import EXPECT, WRONG_LAST_SEQUENCE, NatsStreams

with contextlib.suppress(ImportError):  # the optional extra is not installed
    from nats.js.errors import APIError

__all__ = ["NatsMailboxes"]

# Acknowledgements are carried out this many at a time.
ACK_PARALLEL = 32
# fetch_after reads the pending messages from the oldest and skips those up to
# the one named: it reads this many more than asked (a stream's window of
# unacknowledged messages), never more than FETCH_AFTER_MAX in one go.
FETCH_AFTER_SLACK = 256
FETCH_AFTER_MAX = 1024
# Depth counts are kept for this many mailboxes (recounted from the stream after).
MAX_DEPTH_CACHE = 100_000
MSG_ID = "Nats-Msg-Id"
# Sequence numbers of pending messages remembered (from enqueues and fetches) so
# that an ack deletes by sequence without reading the message again; a key
# forgotten beyond this is looked up once by its subject.
MAX_SEQ_CACHE = 200_000
# Direct gets in flight at once for one fetch (see NatsMailboxes._pending).
MAX_FETCH_WINDOW = 128


@attrs.frozen
class _Msg:
    seq: int
    subject: str
    data: bytes
    headers: Mapping[str, str]


class NatsMailboxes:
    """Every mailbox, on ``streams``; ``shared``: other relay processes use them too."""

    def __init__(self, streams: NatsStreams, *, shared: bool) -> None:
        self._streams = streams
        self._shared = shared
        self.slots = NatsSlots(streams)
        self._depth: dict[str, int] = {}
        self._floor: dict[str, int] = {}
        # Per mailbox, the last message of the last read and its sequence: what a
        # stream's push names next as the message to read on from.
        self._positions: dict[str, tuple[tuple[str, str], int]] = {}
        self._seqs: OrderedDict[tuple[str, str, str], int] = OrderedDict()

    def subject(self, mailbox: str, *tokens: str) -> str:
        """The subject ``p.mb.<mailbox>.<tokens...>``."""
        return self._streams.subject("mb", b64e(mailbox.encode()), *tokens)

    def _tomb(self, mailbox: str, message_id: str, sender: str) -> str:
        return self._streams.subject(
            "ack", b64e(mailbox.encode()), b64e(message_id.encode()), sender
        )

    async def _acked(self, mailbox: str, message_id: str, sender: str) -> bool:
        tomb = self._tomb(mailbox, message_id, sender)
        return await self._streams.last_direct(self._streams.stream("ACKS"), tomb) is not None

    async def _depth_of(self, mailbox: str) -> int:
        if mailbox not in self._depth:
            if len(self._depth) >= MAX_DEPTH_CACHE:
                self._depth.clear()
            count = await self._streams.count(
                self._streams.stream("MBOX"), self.subject(mailbox, ">")
            )
            self._depth.setdefault(mailbox, count)  # an enqueue meanwhile counted already
        return self._depth[mailbox]

    async def mailbox_depth(self, mailbox: str) -> int:
        """Messages waiting in ``mailbox`` (for the relay's outbox gauge)."""
        async with self._streams.io():
            if self._shared:  # other processes admit messages too: count them now
                return await self._streams.count(
                    self._streams.stream("MBOX"), self.subject(mailbox, ">")
                )
            return await self._depth_of(mailbox)

    def _remember(self, mailbox: str, sender: str, message_id: str, seq: int) -> None:
        key = (mailbox, sender, message_id)
        self._seqs[key] = seq
        self._seqs.move_to_end(key)
        while len(self._seqs) > MAX_SEQ_CACHE:
            self._seqs.popitem(last=False)

    async def enqueue(self, mailbox: str, delivery: Delivery, *, max_depth: int) -> bool:
        if self._shared:
            return await self._enqueue_shared(mailbox, delivery, max_depth)
        return await self._enqueue_local(mailbox, delivery, max_depth)

    async def _enqueue_shared(self, mailbox: str, delivery: Delivery, max_depth: int) -> bool:
        """A slot first (the server refuses it beyond the depth), then the message
        naming it (header ``Sw-Slot``); a duplicate or a failed publish frees the
        slot again."""
        mid, sender = delivery.message_id, delivery.sender
        subject = self.subject(mailbox, b64e(mid.encode()), sender)
        async with self._streams.io():
            await self.slots.declare(max_depth)
            slot = await self.slots.take(mailbox, subject)
            if slot is None and await self.slots.free_orphans(mailbox):
                slot = await self.slots.take(mailbox, subject)
            if slot is None:
                if (
                    await self._streams.last_direct(self._streams.stream("MBOX"), subject)
                    is not None
                ):
                    return False  # pending already: a duplicate, even when the mailbox is full
                raise LimitExceeded("mailbox_depth", f"mailbox holds {max_depth} messages")
            fresh = False
            try:
                extra = {SLOT_HEADER: str(slot)}
                if not await self._store_new(mailbox, subject, delivery, extra):
                    return False
                self.slots.remember(mailbox, sender, mid, slot)
                fresh = True
                return True
            finally:
                if not fresh:
                    await self.slots.free(slot)

    async def _enqueue_local(self, mailbox: str, delivery: Delivery, max_depth: int) -> bool:
        """One publish: JetStream refuses a second copy by itself, the relay's record
        of acknowledged ids (stream ``P_ACKS``) is read at the same time.

        ``Nats-Expected-Last-Subject-Sequence: 0`` on the message's own subject
        refuses a copy while the first is pending, however old; ``Nats-Msg-Id``
        makes a retry inside the duplicate window a duplicate even once the first
        copy was acknowledged; beyond the window the tombstone of the
        acknowledgement says so (then the new copy is deleted again).
        """
        mid, sender = delivery.message_id, delivery.sender
        subject = self.subject(mailbox, b64e(mid.encode()), sender)
        async with self._streams.io():
            if await self._depth_of(mailbox) >= max_depth:
                if (
                    await self._streams.last_direct(self._streams.stream("MBOX"), subject)
                    is not None
                ):
                    return False  # pending already: a duplicate, even when the mailbox is full
                raise LimitExceeded("mailbox_depth", f"mailbox holds {max_depth} messages")
            # Counted before the publish (no await between the check and this), so
            # concurrent enqueues in this process never overshoot the limit.
            self._depth[mailbox] += 1
            fresh = False
            try:
                fresh = await self._store_new(mailbox, subject, delivery, {})
                return fresh
            finally:
                if not fresh:
                    self._depth[mailbox] = max(0, self._depth.get(mailbox, 1) - 1)

    async def _store_new(
        self, mailbox: str, subject: str, delivery: Delivery, extra: dict[str, str]
    ) -> bool:
        """Publish ``delivery`` on its subject with the acknowledgement record read at the
        same time; False for a duplicate (pending, inside the Msg-Id window, or
        acknowledged long ago: then the new copy is deleted again)."""
        headers = {"Sw-At": repr(delivery.received_at), MSG_ID: _msg_id(subject), **extra}
        published, acked = await asyncio.gather(
            self._publish_new(subject, delivery.envelope, headers),
            self._acked(mailbox, delivery.message_id, delivery.sender),
        )
        if published is None:
            return False
        if acked:
            await self._streams.delete(self._streams.stream("MBOX"), published)
            return False
        self._remember(mailbox, delivery.sender, delivery.message_id, published)
        return True

    async def _publish_new(self, subject: str, data: bytes, headers: dict[str, str]) -> int | None:
        """Publish unless the subject holds a message or the id is a recent duplicate;
        the new sequence, or None for a duplicate."""
        try:
            ack = await self._streams.publish(subject, data, headers={EXPECT: "0", **headers})
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                return None
            raise
        return None if ack.duplicate else int(ack.seq)

    async def _pending(self, subject: str, start: int, limit: int) -> list[_Msg]:
        """The first ``limit`` messages on ``subject`` from sequence ``start`` on (oldest
        first), by direct gets.

        A round asks, at once, for the first message at or after each of ``w``
        consecutive sequence numbers: together the answers are exactly the
        mailbox's messages in that range plus the first one beyond it, so a
        round never misses one. ``w`` starts at 1 (a mailbox with one message
        costs one request) and doubles while the mailbox's messages are dense in
        the stream (a backlog), halving when they are sparse: a backlog of 100
        comes in about 7 round trips, without a consumer.
        """
        stream = self._streams.stream("MBOX")
        found: list[_Msg] = []
        window = 1
        while len(found) < limit:
            want = min(window, limit - len(found), MAX_FETCH_WINDOW)
            answers = await asyncio.gather(
                *(self._streams.next_direct(stream, subject, start + i) for i in range(want))
            )
            unique = {m.seq: m for m in answers if m is not None}
            if not unique:
                break
            for seq in sorted(unique)[: limit - len(found)]:
                m = unique[seq]
                found.append(_Msg(m.seq, m.subject, m.data or b"", m.headers or {}))
            start = found[-1].seq + 1
            if answers[-1] is None:
                break  # nothing at or after the last position asked: the end
            window = want * 2 if len(unique) >= want else max(1, want // 2)
        return found

    async def fetch(self, mailbox: str, limit: int) -> list[Delivery]:
        return await self._read(mailbox, None, limit)

    async def _read(self, mailbox: str, start: int | None, limit: int) -> list[Delivery]:
        """The first ``limit`` pending messages from sequence ``start`` on (None: from the
        first pending one)."""
        async with self._streams.io():
            subject = self.subject(mailbox, ">")
            if start is not None:
                msgs = await self._pending(subject, start, limit)
            else:
                msgs = await self._pending(subject, self._floor.get(mailbox, 1), limit)
                if msgs and len(self._floor) < MAX_DEPTH_CACHE:
                    # Messages are only ever deleted below the first pending one, so
                    # later scans of this mailbox may start there.
                    self._floor[mailbox] = msgs[0].seq
        out = []
        for msg in msgs:
            _, _, mid, sender = msg.subject.rsplit(".", 3)
            message_id = b64d(mid, "message_id").decode()
            self._remember(mailbox, sender, message_id, msg.seq)
            slot = named_slot(msg.headers)
            if slot is not None:
                self.slots.remember(mailbox, sender, message_id, slot)
            out.append(
                Delivery(
                    message_id=message_id,
                    sender=sender,
                    envelope=bytes(msg.data),
                    received_at=float(msg.headers.get("Sw-At", 0.0)),
                )
            )
        if msgs:
            self._read_up_to(mailbox, (out[-1].sender, out[-1].message_id), msgs[-1].seq)
        return out

    def _read_up_to(self, mailbox: str, last: tuple[str, str], seq: int) -> None:
        """Where the next push of ``mailbox`` reads on from: after ``last``, at ``seq``."""
        if mailbox in self._positions or len(self._positions) < MAX_DEPTH_CACHE:
            self._positions[mailbox] = (last, seq)

    async def ack(self, mailbox: str, keys: Sequence[tuple[str, str]]) -> int:
        removed = 0
        async with self._streams.io():
            for i in range(0, len(keys), ACK_PARALLEL):
                chunk = keys[i : i + ACK_PARALLEL]
                counts = await asyncio.gather(*(self._ack_one(mailbox, *key) for key in chunk))
                removed += sum(counts)
            if mailbox in self._depth:
                self._depth[mailbox] = max(0, self._depth[mailbox] - removed)
        return removed

    async def _ack_one(self, mailbox: str, sender: str, mid: str) -> int:
        """Tombstone and delete by the sequence the fetch (or enqueue) saw: no re-read.

        A key this process never saw (fetched through another relay process) is
        looked up by its subject once. The tombstone (the relay's record of the
        id, kept DEDUPE_RETENTION_SECONDS) and the delete go out together.
        """
        streams, mbox = self._streams, self._streams.stream("MBOX")
        subject = self.subject(mailbox, b64e(mid.encode()), sender)
        seq = self._seqs.pop((mailbox, sender, mid), None)
        slot = self.slots.forget(mailbox, sender, mid)
        cached = seq is not None
        if seq is None:
            last = await streams.last_direct(mbox, subject)
            if last is None:
                return 0  # unknown or acknowledged already
            seq = int(last.seq)
            slot = named_slot(last.headers)

        async def delete(seq: int, cached: bool) -> int:
            if await streams.delete(mbox, seq):
                return 1
            if not cached:
                return 0  # acknowledged concurrently
            # The remembered copy is gone (acknowledged through another process):
            # a newer copy may be pending under the same key.
            last = await streams.last_direct(mbox, subject)
            return 0 if last is None else await delete(int(last.seq), False)

        _, deleted = await asyncio.gather(
            streams.publish(self._tomb(mailbox, mid, sender), b""), delete(seq, cached)
        )
        if deleted and self._shared and slot is not None:
            # The message is gone: free its slot (a crash right here leaves an
            # orphan slot, freed when the mailbox is full).
            await self.slots.free(slot)
        return deleted

    async def fetch_after(
        self, mailbox: str, after: tuple[str, str] | None, limit: int
    ) -> list[Delivery]:
        # Messages are in the order of their stream sequences: those after a message
        # this process read last are those after its sequence, whether it is still
        # pending or not.
        last, seq = self._positions.get(mailbox, (None, 0))
        if after is not None and after == last:
            return await self._read(mailbox, seq + 1, limit)
        # Else the pending messages up to ``after`` are read again and skipped (the
        # stream's window bounds how many that is).
        found = await self.fetch(mailbox, min(limit + FETCH_AFTER_SLACK, FETCH_AFTER_MAX))
        if after is not None:
            keys = [(d.sender, d.message_id) for d in found]
            if after in keys:
                found = found[keys.index(after) + 1 :]
        found = found[:limit]
        if found:  # where the next push reads on from: the last one handed out
            key = (found[-1].sender, found[-1].message_id)
            handed = self._seqs.get((mailbox, *key))
            if handed is not None:
                self._read_up_to(mailbox, key, handed)
        return found

    async def commit_mailbox_batch(
        self,
        acks: Sequence[tuple[str, str, str]],
        enqueues: Sequence[tuple[str, Delivery]],
        *,
        max_depth: int,
    ) -> tuple[list[bool], list[bool | LimitExceeded]]:
        # JetStream has no multi-subject transaction: each message is its own
        # atomic publish (acknowledged by the server once stored), carried out
        # ACK_PARALLEL at a time so a batch costs a few round trips, not one each.
        acked: list[bool] = []
        for i in range(0, len(acks), ACK_PARALLEL):
            chunk = acks[i : i + ACK_PARALLEL]
            counts = await asyncio.gather(*(self.ack(m, [(s, mid)]) for m, s, mid in chunk))
            acked.extend(count > 0 for count in counts)

        async def one(mailbox: str, delivery: Delivery) -> bool | LimitExceeded:
            try:
                return await self.enqueue(mailbox, delivery, max_depth=max_depth)
            except LimitExceeded as exc:
                return exc

        # A message twice in one batch is stored once and answered as a duplicate the
        # second time (as in order); publishing both at once would count it twice
        # against the mailbox's depth.
        first: dict[tuple[str, str, str], int] = {}
        for index, (m, d) in enumerate(enqueues):
            first.setdefault((m, d.sender, d.message_id), index)
        unique = sorted(set(first.values()))
        answers: dict[int, bool | LimitExceeded] = {}
        for i in range(0, len(unique), ACK_PARALLEL):
            chunk_e = unique[i : i + ACK_PARALLEL]
            results = await asyncio.gather(*(one(*enqueues[k]) for k in chunk_e))
            answers.update(zip(chunk_e, results, strict=True))
        stored: list[bool | LimitExceeded] = []
        for index, (m, d) in enumerate(enqueues):
            answer = answers[first[(m, d.sender, d.message_id)]]
            repeated = first[(m, d.sender, d.message_id)] != index
            stored.append(answer if not repeated or isinstance(answer, LimitExceeded) else False)
        return acked, stored


def _msg_id(subject: str) -> str:
    """The ``Nats-Msg-Id`` of a mailbox message: a digest of its subject (mailbox,
    message id, sender), so that it has a bounded length whatever the ids."""
    return hashlib.sha256(subject.encode()).hexdigest()
