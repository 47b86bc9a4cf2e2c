"""Mailbox depth kept by the NATS server, for relay processes sharing a prefix
(``shared = true``): one *slot* message per pending message.

Stream ``P_SLOT`` holds the slots on ``p.slot.<mailbox>``, with
``max_msgs_per_subject`` the depth limit and ``discard_new_per_subject``, so
JetStream itself refuses a slot beyond the limit, atomically. A slot whose
message never came (a relay process killed between the two publishes) is found
when the mailbox is full: a slot older than :data:`ORPHAN_SLOT_SECONDS` whose
message does not name it is deleted.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from typing import Any

from sealwire.relay.wire import b64e
from sealwire_relay._nats_streams import API_TIMEOUT_SECONDS, NatsStreams

with contextlib.suppress(ImportError):  # the optional extra is not installed
    from nats.js.api import DiscardPolicy, StorageType, StreamConfig
    from nats.js.errors import APIError

__all__ = ["NatsSlots", "SLOT_AT", "SLOT_HEADER", "named_slot"]

# A slot without its message is an orphan (its relay process died between the
# two publishes) once older than this: an enqueue in progress finishes within a
# few API timeouts, so a younger one may still get its message.
ORPHAN_SLOT_SECONDS = 4 * API_TIMEOUT_SECONDS
SLOT_HEADER = "Sw-Slot"  # on a mailbox message: the sequence of its slot
SLOT_AT = "Sw-Slot-At"  # when the slot was taken (wall clock of the relay process)
# JetStream's answer to a publish beyond max_msgs_per_subject with
# discard_new_per_subject ("maximum messages per subject exceeded").
SUBJECT_FULL = 10077
# Slot sequences of pending messages remembered (from enqueues and fetches) so
# that an ack frees the slot without reading the message again; a key
# forgotten beyond this is looked up once with its message.
MAX_SLOT_CACHE = 200_000


class NatsSlots:
    """The slots of every mailbox, on ``streams``."""

    def __init__(self, streams: NatsStreams) -> None:
        self._streams = streams
        self._slots: OrderedDict[tuple[str, str, str], int] = OrderedDict()
        self._depth: int | None = None  # the limit the slot stream is configured with

    def subject(self, mailbox: str) -> str:
        """The subject of the slots of ``mailbox``."""
        return self._streams.subject("slot", b64e(mailbox.encode()))

    async def declare(self, max_depth: int) -> None:
        """Create (or re-limit) ``P_SLOT`` for ``max_depth`` slots per mailbox."""
        if self._depth == max_depth:
            return
        config = StreamConfig(
            name=self._streams.stream("SLOT"),
            subjects=[self._streams.subject("slot", ">")],
            storage=StorageType.FILE,
            max_msgs_per_subject=max_depth,
            discard=DiscardPolicy.NEW,
            discard_new_per_subject=True,
            allow_direct=True,
            num_replicas=self._streams.replicas,
        )
        await self._streams.declare(config)
        self._depth = max_depth

    async def take(self, mailbox: str, subject: str) -> int | None:
        """Publish a slot for the message on ``subject``; its sequence, None when full."""
        try:
            ack = await self._streams.publish(
                self.subject(mailbox), subject.encode(), headers={SLOT_AT: repr(time.time())}
            )
        except APIError as exc:
            if exc.err_code == SUBJECT_FULL:
                return None
            raise
        return int(ack.seq)

    async def free(self, slot: int) -> None:
        """Delete the slot ``slot`` (its message is gone, or was never stored)."""
        await self._streams.delete(self._streams.stream("SLOT"), slot)

    async def free_orphans(self, mailbox: str) -> int:
        """Delete the slots of ``mailbox`` whose message never came; how many."""
        freed, seq = 0, 1
        stream, now = self._streams.stream("SLOT"), time.time()
        while True:
            slot = await self._streams.next(stream, self.subject(mailbox), seq)
            if slot is None:
                return freed
            seq = int(slot.seq) + 1
            if now - _stored_at(slot) < ORPHAN_SLOT_SECONDS:
                continue
            msg = await self._streams.last_direct(
                self._streams.stream("MBOX"), bytes(slot.data).decode()
            )
            named = None if msg is None else (msg.headers or {}).get(SLOT_HEADER)
            if named != str(slot.seq) and await self._streams.delete(stream, int(slot.seq)):
                freed += 1

    def remember(self, mailbox: str, sender: str, message_id: str, slot: int) -> None:
        """Keep the slot of a pending message, for its ack."""
        key = (mailbox, sender, message_id)
        self._slots[key] = slot
        self._slots.move_to_end(key)
        while len(self._slots) > MAX_SLOT_CACHE:
            self._slots.popitem(last=False)

    def forget(self, mailbox: str, sender: str, message_id: str) -> int | None:
        """The remembered slot of a message (None when not known), forgotten."""
        return self._slots.pop((mailbox, sender, message_id), None)


def named_slot(headers: Any) -> int | None:
    """The slot a mailbox message's headers name (None when they name none)."""
    named = (headers or {}).get(SLOT_HEADER)
    return int(named) if named is not None and named.isdigit() else None


def _stored_at(slot: Any) -> float:
    """When ``slot`` was taken (0 when it does not say: old enough to check)."""
    try:
        return float((slot.headers or {}).get(SLOT_AT, 0.0))
    except ValueError:
        return 0.0
