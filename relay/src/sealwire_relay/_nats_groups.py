"""The group logs of the JetStream relay backend (stream ``P_GRP``).

``p.g.l.<group>`` is the log, ``p.g.a.<group>`` the group's access records
(:class:`GroupAccess`, immutable, one per change). Every log entry names in its
headers the access record in force after it (``Sw-Access``), the latest commit's
epoch and position, and the entry count. An append is checked (:func:`next_access`)
and published with ``Nats-Expected-Last-Subject-Sequence`` set to the last entry's,
so the check and the change land together or not at all.
"""

from __future__ import annotations

import contextlib
from typing import Any

import attrs

from sealwire.relay.errors import LimitExceeded, RelayUnavailable
from sealwire.relay.errors import NotFoundError as GroupNotFound
from sealwire.relay.wire import GroupLogEntry, b64e
from sealwire_relay._backend import GroupAccess, GroupAppend, next_access
from sealwire_relay._nats_streams import NatsStreams

with contextlib.suppress(ImportError):  # the optional extra is not installed
    from nats.js.errors import APIError

__all__ = ["NatsGroups"]

# Concurrent appends to one group retry their compare-and-set this many times
# before answering "busy"; each retry means another append succeeded.
MAX_APPEND_RETRIES = 200
# Access records read (immutable, by sequence number) kept in memory: one lookup
# saved per append; a miss costs one request.
MAX_ACCESS_CACHE = 10_000


class NatsGroups:
    """Group creation, access and the group logs, on ``streams``."""

    def __init__(self, streams: NatsStreams) -> None:
        self._streams = streams
        self._records: dict[int, GroupAccess] = {}

    def _g(self, kind: str, group_id: bytes) -> str:
        return self._streams.subject("g", kind, b64e(group_id))

    async def _record(self, seq: int) -> GroupAccess:
        record = self._records.get(seq)
        if record is None:
            msg = await self._streams.js.get_msg(self._streams.stream("GRP"), seq=seq)
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
            first = await self._streams.next(self._streams.stream("GRP"), self._g("a", group_id), 1)
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
        streams = self._streams
        async with streams.io():
            last = await streams.last(streams.stream("GRP"), self._g("l", group_id))
            found = await self._access(group_id, last)
        return None if found is None else found[0]

    async def create_group(self, group_id: bytes, members: frozenset[str]) -> GroupAccess:
        streams = self._streams
        async with streams.io():
            access = GroupAccess(members=members, previous=members)
            if not await streams.put_new(self._g("a", group_id), access.to_json()):
                last = await streams.last(streams.stream("GRP"), self._g("l", group_id))
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
        streams, subject = self._streams, self._g("l", group_id)
        async with streams.io():
            for _ in range(MAX_APPEND_RETRIES):
                last = await streams.last(streams.stream("GRP"), subject)
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
                    ack = await streams.publish(self._g("a", group_id), stored.to_json())
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
                seq = await streams.put(subject, entry.message, last.seq if last else 0, headers)
                if seq is not None:
                    return seq
                if fresh is not None:  # never referenced: inert, and deleted
                    self._records.pop(fresh, None)
                    with contextlib.suppress(APIError):
                        await streams.js.delete_msg(streams.stream("GRP"), fresh)
        raise RelayUnavailable("group log too busy; retry")

    async def fetch_group_log(self, group_id: bytes, after: int, limit: int) -> list[GroupLogEntry]:
        streams = self._streams
        out: list[GroupLogEntry] = []
        seq = after + 1
        async with streams.io():
            while len(out) < limit:
                msg = await streams.next(streams.stream("GRP"), self._g("l", group_id), seq)
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
