"""The stream's push: the window of deliveries a connection has been pushed and not
acknowledged (:class:`PushWindow`), and the push from memory (:class:`MailboxFeed`):
the deliveries each backend commit stored, handed to the pushers following their
mailbox, in commit order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from sealwire.relay.wire import Delivery

__all__ = ["CommitFeed", "MailboxFeed", "PushWindow", "Sink"]


@runtime_checkable
class CommitFeed(Protocol):
    """A backend that tells which deliveries each of its commits stored, in commit
    order (:class:`sealwire_relay._sqlite_backend.SqliteBackend`): its stream
    connections are then pushed from memory."""

    def follow_commits(
        self, listener: Callable[[int, Sequence[tuple[str, Delivery]]], None]
    ) -> None: ...

    def read_after(
        self, mailbox: str, after: tuple[str, str] | None, limit: int
    ) -> tuple[list[Delivery], int]: ...


class PushWindow:
    """What one connection has been pushed and not yet acknowledged, oldest first: at
    most ``count`` deliveries and (but for one larger delivery alone) ``size`` bytes
    of envelopes. A client that stops acknowledging gets no more than that."""

    __slots__ = ("_count", "_last_size", "_pushed", "_size", "bytes")

    def __init__(self, count: int, size: int) -> None:
        self._count = count
        self._size = size
        self._pushed: dict[tuple[str, str], int] = {}  # (sender, message id): size
        self._last_size = 0  # of the last delivery added
        self.bytes = 0

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._pushed

    def __len__(self) -> int:
        return len(self._pushed)

    def fit(self, deliveries: Sequence[Delivery]) -> int:
        """How many of ``deliveries``, from the first, the window has room for (into an
        empty window at least one: a delivery larger than the window goes alone)."""
        count, size = self._count - len(self._pushed), self._size - self.bytes
        n = total = 0
        for d in deliveries[: max(count, 0)]:
            total += len(d.envelope)
            if total > size and (n or self._pushed):
                break
            n += 1
        return n

    def room(self) -> int:
        """How many more deliveries the window may take: by count, and by bytes as many
        as would fit of the average size of those it holds (or of the last one added;
        into an empty window at least one). A read of storage asks for no more than
        that: where the bytes bind (16 KiB envelopes fill 4 MiB before 1,024 do), a read
        of what the count allows was read again, and mostly dropped, after each few acks."""
        count = self._count - len(self._pushed)
        size = self.bytes / len(self._pushed) if self._pushed else self._last_size
        if size and count > 0:
            count = min(count, int((self._size - self.bytes) / size) or int(not self._pushed))
        return max(0, count)

    def add(self, delivery: Delivery) -> None:
        key = (delivery.sender, delivery.message_id)
        self._last_size = len(delivery.envelope)
        if key not in self._pushed:
            self._pushed[key] = len(delivery.envelope)
            self.bytes += len(delivery.envelope)

    def remove(self, key: tuple[str, str]) -> None:
        self.bytes -= self._pushed.pop(key, 0)

    def keep(self, keys: set[tuple[str, str]]) -> None:
        """Forget every delivery but those of ``keys``."""
        for key in [k for k in self._pushed if k not in keys]:
            self.remove(key)

    def clear(self) -> None:
        self._pushed.clear()
        self.bytes = 0


class Sink:
    """What a pusher that has read its mailbox up to its end is handed of later commits."""

    __slots__ = ("broken", "epoch", "queue", "queued_bytes")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch  # the backend's writer epoch of the read this follows
        self.queue: list[Delivery] = []  # handed over, not yet taken by the pusher
        self.queued_bytes = 0  # the envelopes' bytes in ``queue``
        # Set when the hand-off cannot be proven complete and in order (another
        # writer, or more than the queue may hold): the pusher reads storage again.
        self.broken = False


class MailboxFeed:
    """Hands the deliveries a commit stored to the pushers of their mailbox.

    A pusher reads its mailbox from storage (on (re)subscription, after a
    poll, or whenever the hand-off broke); when that read reached the end of the
    mailbox, it follows the commits from there: every later commit of this
    backend comes here right after it committed, in commit order, so the pusher
    sends on what it is handed instead of reading back what was just written.
    Nothing is acknowledged or dropped on the strength of it: the mailbox in
    storage stays the truth.

    The pusher takes from its queue what its window has room for; the queue may
    run ahead of the window (a commit stores up to a batch at once), up to
    ``sink_bytes`` of envelopes, and all queues together up to ``total_bytes``:
    past either, the sink breaks and its pusher reads storage again, so a
    consumer that stops acknowledging holds no more memory than that.
    """

    def __init__(self, *, sink_bytes: int, total_bytes: int) -> None:
        self._sink_bytes = sink_bytes
        self._total_bytes = total_bytes
        self._queued_bytes = 0  # in every sink's queue
        self._sinks: dict[str, list[Sink]] = {}

    @property
    def queued_bytes(self) -> int:
        """The envelopes' bytes held in every sink's queue."""
        return self._queued_bytes

    def follow(self, mailbox: str, epoch: int) -> Sink:
        sink = Sink(epoch)
        self._sinks.setdefault(mailbox, []).append(sink)
        return sink

    def leave(self, mailbox: str, sink: Sink) -> None:
        sinks = self._sinks.get(mailbox)
        if sinks is not None and sink in sinks:
            sinks.remove(sink)
            if not sinks:
                del self._sinks[mailbox]
        self._break(sink)

    def take(self, sink: Sink, window: PushWindow) -> list[Delivery]:
        """The oldest deliveries of ``sink``'s queue that ``window`` has room for,
        taken out of it."""
        n = window.fit(sink.queue)
        if n >= len(sink.queue):
            taken, sink.queue = sink.queue, []
        else:
            taken, sink.queue = sink.queue[:n], sink.queue[n:]
        size = sum(len(d.envelope) for d in taken)
        sink.queued_bytes -= size
        self._queued_bytes -= size
        return taken

    def committed(self, epoch: int, stored: Sequence[tuple[str, Delivery]]) -> None:
        if not self._sinks:
            return
        for mailbox, delivery in stored:
            for sink in self._sinks.get(mailbox, ()):
                if sink.broken:
                    continue
                size = len(delivery.envelope)
                if (
                    sink.epoch != epoch
                    or sink.queued_bytes + size > self._sink_bytes
                    or self._queued_bytes + size > self._total_bytes
                ):
                    self._break(sink)
                else:
                    sink.queue.append(delivery)
                    sink.queued_bytes += size
                    self._queued_bytes += size

    def _break(self, sink: Sink) -> None:
        sink.broken = True
        sink.queue.clear()
        self._queued_bytes -= sink.queued_bytes
        sink.queued_bytes = 0
