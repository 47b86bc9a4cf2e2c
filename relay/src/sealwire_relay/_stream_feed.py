"""The stream's push from memory: the deliveries each backend commit stored, handed
to the pushers following their mailbox, in commit order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from sealwire.relay.wire import Delivery

__all__ = ["CommitFeed", "MailboxFeed", "Pusher", "Sink"]


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


class Pusher(Protocol):
    """What the feed needs of a pusher: the deliveries it has pushed and not yet had
    acknowledged (its window)."""

    pushed: dict[tuple[str, str], None]


class Sink:
    """What a pusher that has read its mailbox up to its end is handed of later commits."""

    __slots__ = ("broken", "epoch", "queue", "session")

    def __init__(self, session: Pusher, epoch: int) -> None:
        self.session = session
        self.epoch = epoch  # the backend's writer epoch of the read this follows
        self.queue: list[Delivery] = []
        # Set when the hand-off cannot be proven complete and in order (another
        # writer, or more than the window holds): the pusher reads storage again.
        self.broken = False


class MailboxFeed:
    """Hands the deliveries a commit stored to the pushers of their mailbox.

    A pusher reads its mailbox from storage (on (re)subscription, after a
    poll, after its window filled, or whenever the hand-off broke); when that
    read reached the end of the mailbox, it follows the commits from there:
    every later commit of this backend comes here right after it committed,
    in commit order, so the pusher sends on what it is handed instead of
    reading back what was just written. Nothing is acknowledged or dropped on
    the strength of it: the mailbox in storage stays the truth.
    """

    def __init__(self, window: int) -> None:
        self._window = window  # deliveries a pusher may have unacknowledged
        self._sinks: dict[str, list[Sink]] = {}

    def follow(self, mailbox: str, session: Pusher, epoch: int) -> Sink:
        sink = Sink(session, epoch)
        self._sinks.setdefault(mailbox, []).append(sink)
        return sink

    def leave(self, mailbox: str, sink: Sink) -> None:
        sinks = self._sinks.get(mailbox)
        if sinks is not None and sink in sinks:
            sinks.remove(sink)
            if not sinks:
                del self._sinks[mailbox]

    def committed(self, epoch: int, stored: Sequence[tuple[str, Delivery]]) -> None:
        if not self._sinks:
            return
        for mailbox, delivery in stored:
            for sink in self._sinks.get(mailbox, ()):
                if sink.broken:
                    continue
                if sink.epoch != epoch or (
                    len(sink.queue) + len(sink.session.pushed) >= self._window
                ):
                    sink.broken = True
                    sink.queue.clear()
                else:
                    sink.queue.append(delivery)
