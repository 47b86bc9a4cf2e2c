"""The mailboxes of the JetStream relay backend: enqueue, fetch and ack on stream
``P_MBOX`` (``p.mb.<mailbox>.<message id>.<sender>``, one subject per message),
with the record of acknowledged ids in stream ``P_ACKS``.

An enqueue is one publish, with ``Nats-Expected-Last-Subject-Sequence: 0`` (a
second copy is refused atomically while the first is pending, however old) and
``Nats-Msg-Id`` (a retry inside JetStream's duplicate window is a duplicate even
once the first copy was acknowledged); beyond the window the tombstone the ack
left in ``P_ACKS`` (kept ``DEDUPE_RETENTION_SECONDS``) says so: it is read
by a direct get at the same time as the publish, and a copy it condemns is
deleted again. An ack purges each message by its own subject (many at once),
then writes the tombstones of those it removed. A fetch reads a mailbox's first
messages by direct gets and a backlog through one ephemeral consumer (see
:meth:`NatsMailboxes._pending`).

The depth is counted once per mailbox from the stream and then kept by this
process, reserved before each publish; with ``shared`` the server keeps it
instead (:mod:`sealwire_relay._nats_slots`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import attrs

from sealwire.relay.errors import LimitExceeded
from sealwire.relay.wire import Delivery, b64d, b64e
from sealwire_relay._nats_slots import SLOT_HEADER, NatsSlots, named_slot
from sealwire_relay._nats_streams import EXPECT, WRONG_LAST_SEQUENCE, NatsStreams

with contextlib.suppress(ImportError):  # the optional extra is not installed
    from nats.js.errors import APIError

__all__ = ["NatsMailboxes"]

# Enqueues of one batch are carried out this many at a time.
ENQUEUE_PARALLEL = 32
# fetch_after reads the pending messages from the oldest and skips those up to
# the one named: it reads this many more than asked (a stream's window of
# unacknowledged messages), never more than FETCH_AFTER_MAX in one go.
FETCH_AFTER_SLACK = 256
FETCH_AFTER_MAX = 1024
# Depth counts are kept for this many mailboxes (recounted from the stream after).
MAX_DEPTH_CACHE = 100_000
MSG_ID = "Nats-Msg-Id"
# Rounds of direct gets a fetch makes (1, 2 then 4 at once while the mailbox's
# messages are dense) before it reads on through a consumer (NatsMailboxes._pending).
DIRECT_ROUNDS = 2


@attrs.frozen
class _Msg:
    seq: int
    subject: str
    data: bytes
    headers: Mapping[str, str]


def _msg(seq: int, m: Any) -> _Msg:
    return _Msg(int(seq), m.subject, m.data or b"", m.headers or {})


class NatsMailboxes:
    """Every mailbox, on ``streams``; ``shared``: other relay processes use them too."""

    def __init__(self, streams: NatsStreams, *, shared: bool) -> None:
        self._streams = streams
        self._shared = shared
        self.slots = NatsSlots(streams)
        self._depth: dict[str, int] = {}
        self._floor: dict[str, int] = {}
        self._backlogs: set[str] = set()  # mailboxes whose last fetch filled its batch
        self._connection = 0  # the streams' connection the caches above were read on

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
        async with self._io():
            if self._shared:  # other processes admit messages too: count them now
                return await self._streams.count(
                    self._streams.stream("MBOX"), self.subject(mailbox, ">")
                )
            return await self._depth_of(mailbox)

    @contextlib.asynccontextmanager
    async def _io(self) -> AsyncIterator[None]:
        """The streams' :meth:`~NatsStreams.io`, with the depths and positions learnt
        before a reconnection forgotten: a NATS server that crashed may have lost its
        last writes (and numbers messages again from there), so they are read again."""
        async with self._streams.io():
            if self._connection != self._streams.connections:
                self._connection = self._streams.connections
                self._depth.clear()
                self._floor.clear()
                self._backlogs.clear()
            yield

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
        async with self._io():
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
        async with self._io():
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

    async def _pending(self, mailbox: str, subject: str, limit: int) -> list[_Msg]:
        """The first ``limit`` messages on ``subject`` (oldest first): complete for the
        range they span.

        Direct gets first: a round asks, at once, for the first message at or
        after each of ``w`` consecutive sequence numbers; together the answers
        are exactly the mailbox's messages in that range plus the first one beyond
        it, so a round never misses one. ``w`` starts at 1 (a mailbox with one
        message costs one request) and doubles while the messages are dense in the
        stream. What :data:`DIRECT_ROUNDS` rounds leave is read on through one
        ephemeral consumer (:meth:`NatsStreams.scan`): two requests for the rest of
        the batch, where direct gets would cost one per message.
        """
        stream = self._streams.stream("MBOX")
        start = self._floor.get(mailbox, 1)
        found: list[_Msg] = []
        window = 1
        # A mailbox whose last fetch filled its batch has a backlog: straight to the scan.
        for _ in range(0 if mailbox in self._backlogs else DIRECT_ROUNDS):
            want = min(window, limit - len(found))
            answers = await asyncio.gather(
                *(self._streams.next_direct(stream, subject, start + i) for i in range(want))
            )
            unique = {m.seq: m for m in answers if m is not None}
            if not unique:
                break
            found.extend(_msg(seq, unique[seq]) for seq in sorted(unique)[: limit - len(found)])
            start = found[-1].seq + 1
            if answers[-1] is None:
                break  # nothing at or after the last position asked: the end
            window = want * 2 if len(unique) >= want else max(1, want // 2)
            if len(found) == limit:
                return found
        else:
            rest = await self._streams.scan(stream, subject, start, limit - len(found))
            found.extend(_msg(m.metadata.sequence.stream, m) for m in rest)
        return found

    async def fetch(self, mailbox: str, limit: int) -> list[Delivery]:
        async with self._io():
            msgs = await self._pending(mailbox, self.subject(mailbox, ">"), limit)
            if msgs and len(self._floor) < MAX_DEPTH_CACHE:
                # Messages are only ever deleted below the first pending one, so
                # later scans of this mailbox may start there.
                self._floor[mailbox] = msgs[0].seq
            if len(msgs) < limit:
                self._backlogs.discard(mailbox)
            elif len(self._backlogs) < MAX_DEPTH_CACHE:
                self._backlogs.add(mailbox)
        out = []
        for msg in msgs:
            _, _, mid, sender = msg.subject.rsplit(".", 3)
            message_id = b64d(mid, "message_id").decode()
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
        return out

    async def ack(self, mailbox: str, keys: Sequence[tuple[str, str]]) -> int:
        return sum(await self.acknowledge(mailbox, keys))

    async def acknowledge(self, mailbox: str, keys: Sequence[tuple[str, str]]) -> list[bool]:
        """Whether each ``(sender, message id)`` key removed a pending message (a key
        named twice removes it once).

        Each message is purged by its own subject (its mailbox, id and sender), not
        by a sequence number: right whatever the stream numbered it. The purges go
        out at once, then the tombstones of the messages they removed (the relay's
        record of the ids, kept DEDUPE_RETENTION_SECONDS), at once.
        """
        unique = list(dict.fromkeys(keys))
        subjects = [self.subject(mailbox, b64e(mid.encode()), sender) for sender, mid in unique]
        async with self._io():
            slots = await self._slots_of(mailbox, unique, subjects) if self._shared else {}
            counts = await self._streams.purge_subjects(self._streams.stream("MBOX"), subjects)
            gone = [key for key, count in zip(unique, counts, strict=True) if count]
            tombs = [(self._tomb(mailbox, mid, sender), b"") for sender, mid in gone]
            await self._streams.publish_many(tombs)
            if mailbox in self._depth:
                self._depth[mailbox] = max(0, self._depth[mailbox] - len(gone))
            # The messages are gone: free their slots (a crash right here leaves
            # orphan slots, freed when the mailbox is full).
            freed = [slot for key in gone if (slot := slots.get(key)) is not None]
            await asyncio.gather(*(self.slots.free(slot) for slot in freed))
        answers, first = [], set(gone)
        for key in keys:
            answers.append(key in first)
            first.discard(key)
        return answers

    async def _slots_of(
        self, mailbox: str, keys: Sequence[tuple[str, str]], subjects: Sequence[str]
    ) -> dict[tuple[str, str], int | None]:
        """The slot of each pending message: remembered from its enqueue or fetch, else
        read from its headers (fetched through another relay process)."""
        slots = {key: self.slots.forget(mailbox, *key) for key in keys}
        unknown = [(key, subject) for key, subject in zip(keys, subjects, strict=True)
                   if slots[key] is None]  # fmt: skip
        mbox = self._streams.stream("MBOX")
        found = await asyncio.gather(*(self._streams.last_direct(mbox, s) for _, s in unknown))
        for (key, _), msg in zip(unknown, found, strict=True):
            slots[key] = None if msg is None else named_slot(msg.headers)
        return slots

    async def fetch_after(
        self, mailbox: str, after: tuple[str, str] | None, limit: int
    ) -> list[Delivery]:
        # On top of fetch: the pending messages up to ``after`` are read again and
        # skipped (the stream's window bounds how many that is).
        found = await self.fetch(mailbox, min(limit + FETCH_AFTER_SLACK, FETCH_AFTER_MAX))
        if after is not None:
            keys = [(d.sender, d.message_id) for d in found]
            if after in keys:
                found = found[keys.index(after) + 1 :]
        return found[:limit]

    async def commit_mailbox_batch(
        self,
        acks: Sequence[tuple[str, str, str]],
        enqueues: Sequence[tuple[str, Delivery]],
        *,
        max_depth: int,
    ) -> tuple[list[bool], list[bool | LimitExceeded]]:
        # JetStream has no multi-subject transaction: each message is its own
        # atomic publish or purge (acknowledged by the server once stored), carried
        # out many at a time so a batch costs a few round trips, not one each.
        boxes: dict[str, list[int]] = {}
        for index, (mailbox, _, _) in enumerate(acks):
            boxes.setdefault(mailbox, []).append(index)
        answered = await asyncio.gather(
            *(self.acknowledge(m, [acks[i][1:] for i in indexes]) for m, indexes in boxes.items())
        )
        acked = [False] * len(acks)
        for indexes, replies in zip(boxes.values(), answered, strict=True):
            for index, removed in zip(indexes, replies, strict=True):
                acked[index] = removed

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
        for i in range(0, len(unique), ENQUEUE_PARALLEL):
            chunk_e = unique[i : i + ENQUEUE_PARALLEL]
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
