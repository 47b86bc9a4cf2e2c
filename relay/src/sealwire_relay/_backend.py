"""The storage contract of the relay (:class:`RelayBackend`) and backend selection.

A backend stores ciphertext and public keys only. Its operations are atomic on
their own: a one-time prekey or KeyPackage is handed out once even under
concurrent fetches, an enqueue is idempotent by ``(mailbox, sender,
message_id)``, and a group append checks and changes the group's
:class:`GroupAccess` atomically with the entry (rules in :func:`next_access`).

Groups. The relay does not understand MLS, so it cannot tell a valid commit
from garbage; members can (the first *valid* commit for their epoch in log
order wins, invalid ones and later ones for the same epoch are skipped). The
relay keeps the log ordered and the member list tied to the commits:

* the list is set once, when the group is created; after that it changes
  only with a commit append that carries the new list (``members``);
* the log takes a commit for the epoch after the latest commit's, and a
  second commit for the latest commit's epoch only when its appender names
  the commit it supersedes (``supersedes``: the latest commit's sequence
  number), having found that one invalid; a member of the list in force
  before that commit may do so, so a garbage commit that names a hostile list
  cannot lock the members out, and a dishonest supersede is harmless (members
  still take the first valid commit);
* readers are the current list, the list before the latest commit (a member
  removed by it reads the commit that removes it) and the agents admitted
  for an external join since.

Backends are contributed through the ``sealwire_relay_backends`` hook (see
:class:`sealwire.components.RelayBackendProvider`); this distribution brings
``sqlite`` and ``nats`` (:data:`BUILTIN_RELAY_BACKENDS`). The server is handed
its providers; it never loads plugins itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import attrs

from sealwire.errors import DecodeError
from sealwire.relay.errors import EpochConflictError, ForbiddenError, LimitExceeded
from sealwire.relay.wire import Delivery, FetchedPrekeys, GroupLogEntry

__all__ = [
    "GroupAccess",
    "GroupAppend",
    "RelayBackend",
    "next_access",
]


@attrs.frozen(kw_only=True)
class GroupAccess:
    """Who may use a group's log, and where its latest commit is.

    ``members`` is the list in force, ``previous`` the one before the latest
    commit (equal to ``members`` before the first), ``admitted`` the agents a
    member let in for an external join since the latest commit; ``last_commit``
    and ``commit_seq`` the epoch and log position of the latest commit.
    """

    members: frozenset[str]
    previous: frozenset[str]
    admitted: frozenset[str] = frozenset()
    last_commit: int | None = None
    commit_seq: int | None = None

    def readers(self) -> frozenset[str]:
        """Who may read the log."""
        return self.members | self.previous | self.admitted

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "members": sorted(self.members),
                "previous": sorted(self.previous),
                "admitted": sorted(self.admitted),
                "last_commit": self.last_commit,
                "commit_seq": self.commit_seq,
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> GroupAccess:
        """Read what :meth:`to_json` wrote (the backend's own record)."""
        try:
            obj = json.loads(data)
            return cls(
                members=frozenset(obj["members"]),
                previous=frozenset(obj["previous"]),
                admitted=frozenset(obj.get("admitted", ())),
                last_commit=obj.get("last_commit"),
                commit_seq=obj.get("commit_seq"),
            )
        except (ValueError, KeyError, TypeError):
            raise DecodeError("damaged group access record", field="group") from None


@attrs.frozen(kw_only=True)
class GroupAppend:
    """What an append asks besides its entry: a commit's new list and the
    commit it supersedes; an application message's admitted agents."""

    members: frozenset[str] | None = None
    supersedes: int | None = None
    admit: frozenset[str] = frozenset()


def next_access(
    access: GroupAccess, entry: GroupLogEntry, request: GroupAppend, *, max_members: int
) -> GroupAccess:
    """The access after appending ``entry`` (its ``commit_seq`` still the old one: the
    backend sets the entry's own sequence number); EpochConflictError or
    ForbiddenError (nothing appended) when the rules of the module forbid it."""
    sender = entry.sender
    if entry.kind != "commit":
        if sender not in access.members | access.previous:
            raise ForbiddenError("not a member of this group")
        if not request.admit:
            return access
        if sender not in access.members:
            raise ForbiddenError("only a current member admits agents")
        admitted = access.admitted | request.admit
        if len(admitted) > max_members:
            raise LimitExceeded("group_members", f"more than {max_members} admitted agents")
        return attrs.evolve(access, admitted=admitted)
    members = request.members if request.members is not None else access.members
    last = access.last_commit
    if request.supersedes is None:
        if sender not in access.readers():
            raise ForbiddenError("not a member of this group")
        if last is not None and entry.epoch != last + 1:
            raise EpochConflictError(
                f"the log accepts a commit for epoch {last + 1}, not {entry.epoch}",
                expected_epoch=last + 1,
                commit_seq=access.commit_seq,
            )
        if sender not in members:
            raise ForbiddenError("a committer stays a member of its group")
        return GroupAccess(members=members, previous=access.members, last_commit=entry.epoch)
    if sender not in access.previous:
        raise ForbiddenError("only a member of the epoch supersedes its commit")
    if access.commit_seq != request.supersedes or last != entry.epoch:
        raise EpochConflictError(
            "the superseded commit is not the latest commit of that epoch",
            expected_epoch=None if last is None else last + 1,
            commit_seq=access.commit_seq,
        )
    if sender not in members:
        raise ForbiddenError("a committer stays a member of its group")
    return GroupAccess(members=members, previous=access.previous, last_commit=entry.epoch)


@runtime_checkable
class RelayBackend(Protocol):
    """Where a relay keeps its directories, mailboxes and group logs."""

    async def start(self) -> None:
        """Open connections and create tables or streams (idempotent)."""

    async def close(self) -> None: ...

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
        """Replace the bundle and add one-time keys (an existing key id is kept as is).

        Raises LimitExceeded("prekeys") and stores nothing when a pool would
        exceed ``max_per_pool`` or there would be more than ``max_pools`` pools.
        """

    async def fetch_prekeys(self, agent_id: str, binding: str) -> FetchedPrekeys | None:
        """The bundle and one key taken from each pool (None when no bundle)."""

    async def count_prekeys(self, agent_id: str, binding: str) -> dict[str, int]: ...

    async def publish_key_package(
        self, agent_id: str, key_package_id: str, key_package: bytes, *, max_count: int
    ) -> None:
        """Add a KeyPackage (an existing id is kept); LimitExceeded beyond ``max_count``."""

    async def fetch_key_package(self, agent_id: str) -> bytes | None:
        """Take the oldest KeyPackage of ``agent_id``: each is handed out once."""

    async def count_key_packages(self, agent_id: str) -> int: ...

    async def put_card(self, agent_id: str, card_json: bytes, *, max_count: int) -> None:
        """Store ``agent_id``'s card (canonical JSON), replacing its previous one.

        Raises LimitExceeded("cards") and stores nothing when a card for a new
        agent would make more than ``max_count`` cards.
        """

    async def get_cards(self, agent_ids: Sequence[str]) -> dict[str, bytes]:
        """The stored cards of those of ``agent_ids`` that have one."""

    async def enqueue(self, mailbox: str, delivery: Delivery, *, max_depth: int) -> bool:
        """Store ``delivery``; False when ``(sender, message_id)`` was already accepted.

        Raises LimitExceeded("mailbox_depth") when ``max_depth`` messages wait.
        """

    async def fetch(self, mailbox: str, limit: int) -> list[Delivery]:
        """The oldest unacknowledged messages, in order of acceptance."""

    async def ack(self, mailbox: str, keys: Sequence[tuple[str, str]]) -> int:
        """Acknowledge (remove) messages by ``(sender, message_id)``; the number removed.

        Unknown and already acknowledged keys are ignored: an agent can only ever
        remove what was delivered to its own mailbox, from the sender it names.
        """

    async def fetch_after(
        self, mailbox: str, after: tuple[str, str] | None, limit: int
    ) -> list[Delivery]:
        """The oldest unacknowledged messages accepted after ``after`` (its sender and id).

        From the oldest when ``after`` is None or names no message of the
        mailbox: a stream reads on from the last message it pushed instead of
        reading again everything it pushed and is still waiting for acks on.
        """

    async def commit_mailbox_batch(
        self,
        acks: Sequence[tuple[str, str, str]],
        enqueues: Sequence[tuple[str, Delivery]],
        *,
        max_depth: int,
    ) -> tuple[list[bool], list[bool | LimitExceeded]]:
        """Acknowledge ``(mailbox, sender, message_id)`` keys, then store ``(mailbox,
        delivery)`` pairs, committed together where the backend can (one transaction).

        The answers, in order: per ack, whether it removed a pending message; per
        enqueue, True (stored), False (a duplicate, as :meth:`enqueue`) or the
        LimitExceeded("mailbox_depth") that kept it out. Any other error fails the
        whole batch (and then none of it was stored, on a transactional backend).
        """

    async def group_access(self, group_id: bytes) -> GroupAccess | None:
        """Who may use the group's log, or None for a group never created."""

    async def create_group(self, group_id: bytes, members: frozenset[str]) -> GroupAccess:
        """Create the group with ``members`` (also its ``previous``) unless it exists;
        the group's access either way (the caller compares)."""

    async def append_group(
        self,
        group_id: bytes,
        entry: GroupLogEntry,
        request: GroupAppend,
        *,
        max_entries: int,
        max_members: int,
    ) -> int:
        """Append to the log and return the entry's sequence number.

        Atomically: the group's access is read, :func:`next_access` checks the
        append and gives the new access (a commit's ``commit_seq`` being the
        entry's own sequence number), and both are stored; NotFoundError for a
        group never created. ``entry.seq`` is ignored.
        """

    async def fetch_group_log(self, group_id: bytes, after: int, limit: int) -> list[GroupLogEntry]:
        """Entries with ``seq > after``, in order."""
