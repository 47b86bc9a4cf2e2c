"""The stream's grouped commits: the sends and acks of every stream connection go
into few backend commits, each caller answered once its part is committed."""

from __future__ import annotations

import asyncio
import collections
import logging

import attrs

from sealwire.errors import SealwireError
from sealwire.relay.errors import LimitExceeded
from sealwire.relay.wire import Delivery
from sealwire_relay._service import RelayService

__all__ = ["GATHER_IDLE_TURNS", "GATHER_TURNS", "MAX_COMMIT_ITEMS", "Answer", "MailboxCommitter"]

log = logging.getLogger("sealwire.relay")

# One commit takes at most this many sends and acks together: bounds the time
# one transaction holds the database (and the event loop, on SQLite).
MAX_COMMIT_ITEMS = 2048
# Turns of the event loop a commit waits at most for more work to join it, on a
# backend that commits on the loop (SQLite). Nothing can queue while such a
# commit runs: the sends and acks of frames already received (on every
# connection) queue during these turns instead, a frame read in one turn reaching
# the queue two turns later (its connection's task, then its answer's). A turn
# costs microseconds, a commit (one transaction) a hundred or more: at 16 calls
# in flight a commit carries ~3.6 items where it carried ~1.5
# (benchmarks/bench_mailbox.py).
GATHER_TURNS = 8
# ... and it stops waiting after this many turns in a row brought nothing (one
# idle turn proves nothing: the frame may be two turns from the queue).
GATHER_IDLE_TURNS = 3

Answer = tuple[list[bool], list[bool | LimitExceeded]]


@attrs.define
class Job:
    """Sends and acks of one frame, and where their commit's answer goes."""

    acks: list[tuple[str, str, str]]
    enqueues: list[tuple[str, Delivery]]
    done: asyncio.Future[Answer]


class MailboxCommitter:
    """Groups the sends and acks of every stream into few backend commits.

    Whatever is queued when a commit starts goes into it (up to
    :data:`MAX_COMMIT_ITEMS`); each caller is answered once its part is
    committed. No commit is ever skipped: the first caller starts a drain,
    which runs until the queue is empty. On a backend that commits on the event
    loop (SQLite: ``commits_on_loop``) nothing can queue while a commit runs,
    so each commit first gathers for a few turns of the loop (:meth:`_gather`);
    on another (NATS) work queues while a commit awaits its storage.
    """

    def __init__(self, service: RelayService) -> None:
        self._service = service
        self._queue: collections.deque[Job] = collections.deque()
        self._drain: asyncio.Task[None] | None = None
        self._gathers = bool(getattr(service.backend, "commits_on_loop", False))
        # Whether the last gathering brought more work: when it did not, a lone job
        # (one call at a time) commits at once instead of waiting turns for nothing;
        # more than one job queued (load) starts gathering again.
        self._gathering_helps = True

    async def commit(
        self, acks: list[tuple[str, str, str]], enqueues: list[tuple[str, Delivery]]
    ) -> Answer:
        job = Job(acks, enqueues, asyncio.get_running_loop().create_future())
        self._queue.append(job)
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._run(), name="sealwire-relay-commit")
        return await job.done

    async def _run(self) -> None:
        while self._queue:
            if self._gathers and (self._gathering_helps or len(self._queue) > 1):
                self._gathering_helps = await self._gather()
            jobs: list[Job] = []
            size = 0
            while self._queue and (not jobs or size < MAX_COMMIT_ITEMS):
                job = self._queue.popleft()
                jobs.append(job)
                size += len(job.acks) + len(job.enqueues)
            acks = [a for j in jobs for a in j.acks]
            enqueues = [e for j in jobs for e in j.enqueues]
            try:
                acked, stored = await self._service.commit_mailbox_batch(acks, enqueues)
            except Exception as exc:
                if not isinstance(exc, SealwireError):
                    log.exception("relay stream commit failed")
                for job in jobs:
                    if not job.done.done():
                        job.done.set_exception(exc)
                continue
            a = e = 0
            for job in jobs:
                part = (acked[a : a + len(job.acks)], stored[e : e + len(job.enqueues)])
                a, e = a + len(job.acks), e + len(job.enqueues)
                if not job.done.done():
                    job.done.set_result(part)

    async def _gather(self) -> bool:
        """Let the event loop turn while that brings more work for this commit (a frame
        already received, on any connection, reaches the queue a few turns later);
        whether it brought any."""
        start = queued = self._size()
        idle = 0
        for _ in range(GATHER_TURNS):
            if queued >= MAX_COMMIT_ITEMS or idle >= GATHER_IDLE_TURNS:
                break
            await asyncio.sleep(0)
            now = self._size()
            idle = idle + 1 if now == queued else 0
            queued = now
        return queued > start

    def _size(self) -> int:
        return sum(len(job.acks) + len(job.enqueues) for job in self._queue)
