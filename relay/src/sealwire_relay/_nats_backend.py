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
  message. An enqueue is one publish, with ``Nats-Expected-Last-Subject-Sequence:
  0`` (a second copy is refused atomically while the first is pending, however
  old) and ``Nats-Msg-Id`` (a retry inside JetStream's duplicate window is a
  duplicate even once the first copy was acknowledged); beyond the window the
  relay's own record of acknowledged ids, stream ``P_ACKS`` (a tombstone per
  message, kept :data:`DEDUPE_RETENTION_SECONDS`), says so: it is read by a
  direct get at the same time as the publish, and a copy it condemns is deleted
  again. An ack deletes by the stream sequence this process saw when it stored
  or fetched the message (no re-read; one look-up by subject otherwise) and
  writes the tombstone at the same time. A fetch uses direct gets, no
  consumer: windows of "first message at or after sequence s" requests in
  flight at once (see :mod:`sealwire_relay._nats_mailboxes`).
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
mailbox depth is counted once per mailbox from the stream and then kept by
this relay process, reserved before each publish: exact when one relay
process uses the streams.

With ``shared = true`` (several relay processes on one prefix) the depth is
kept by the server instead, exact whichever process admits a message: stream
``P_SLOT`` holds one *slot* message per pending message on
``p.slot.<mailbox>``, with ``max_msgs_per_subject`` the depth limit and
``discard_new_per_subject``, so JetStream itself refuses the slot beyond the
limit, atomically. An enqueue publishes its slot, then the message (header
``Sw-Slot``: the slot's sequence); a duplicate or a failed publish deletes the
slot again; an ack deletes the message, then its slot. A slot whose message
never came (a relay process killed between the two publishes) is found when
the mailbox is full: a slot older than :data:`ORPHAN_SLOT_SECONDS` whose
message does not name it is deleted. One more publish per enqueue and one
more delete per ack: the price of sharing. Every process sharing a prefix must
have the same ``max_mailbox_depth`` (the stream holds one limit).

This module composes the parts, one module each: the connection, streams and
request primitives (:mod:`sealwire_relay._nats_streams`), the directories
(:mod:`sealwire_relay._nats_directory`), the mailboxes
(:mod:`sealwire_relay._nats_mailboxes`, with the shared-mode slots of
:mod:`sealwire_relay._nats_slots`) and the group logs
(:mod:`sealwire_relay._nats_groups`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sealwire.errors import ConfigurationError
from sealwire.relay.errors import LimitExceeded
from sealwire.relay.wire import Delivery, FetchedPrekeys, GroupLogEntry
from sealwire_relay._backend import GroupAccess, GroupAppend
from sealwire_relay._nats_directory import NatsDirectory
from sealwire_relay._nats_groups import NatsGroups
from sealwire_relay._nats_mailboxes import NatsMailboxes
from sealwire_relay._nats_streams import NatsStreams, nats_installed

__all__ = ["NatsBackend"]


class NatsBackend:
    """Relay storage in JetStream streams on ``servers`` (see the module docstring).

    Composed of the connection and its streams (``streams``), the prekey,
    KeyPackage and card directories (``directory``), the mailboxes
    (``mailboxes``) and the group logs (``groups``).
    """

    def __init__(
        self, servers: Sequence[str], *, prefix: str = "SW", shared: bool = False, replicas: int = 1
    ) -> None:
        if not nats_installed():
            raise ConfigurationError("the nats backend needs nats-py: pip install 'sealwire[nats]'")
        if not prefix.isalnum():
            raise ConfigurationError("the nats prefix must be alphanumeric")
        self.streams = NatsStreams(servers, prefix=prefix, replicas=replicas)
        self.directory = NatsDirectory(self.streams)
        self.mailboxes = NatsMailboxes(self.streams, shared=shared)
        self.groups = NatsGroups(self.streams)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> NatsBackend:
        """Options: ``servers`` (list of ``nats://`` URLs), ``prefix`` (stream names),
        ``shared`` (several relay processes use this prefix: the server keeps the depth),
        ``replicas`` (copies of each stream in a JetStream cluster, 1 to 5)."""
        unknown = set(options) - {"servers", "prefix", "shared", "replicas"}
        if unknown:
            raise ConfigurationError(f"unknown nats relay options: {sorted(unknown)}")
        servers = options.get("servers", ["nats://127.0.0.1:4222"])
        if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
            raise ConfigurationError("nats servers must be a list of URLs")
        shared = options.get("shared", False)
        if not isinstance(shared, bool):
            raise ConfigurationError("nats shared must be true or false")
        replicas = options.get("replicas", 1)
        if type(replicas) is not int:
            raise ConfigurationError("nats replicas must be an integer")
        return cls(
            servers, prefix=str(options.get("prefix", "SW")), shared=shared, replicas=replicas
        )

    async def start(self) -> None:
        """Connect and create the streams (see :meth:`NatsStreams.start`)."""
        await self.streams.start()

    async def close(self) -> None:
        await self.streams.close()

    # -- directories --------------------------------------------------------------------

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
        await self.directory.publish_prekeys(
            agent_id, binding, bundle, one_time, max_per_pool=max_per_pool, max_pools=max_pools
        )

    async def fetch_prekeys(self, agent_id: str, binding: str) -> FetchedPrekeys | None:
        return await self.directory.fetch_prekeys(agent_id, binding)

    async def count_prekeys(self, agent_id: str, binding: str) -> dict[str, int]:
        return await self.directory.count_prekeys(agent_id, binding)

    async def publish_key_package(
        self, agent_id: str, key_package_id: str, key_package: bytes, *, max_count: int
    ) -> None:
        await self.directory.publish_key_package(
            agent_id, key_package_id, key_package, max_count=max_count
        )

    async def fetch_key_package(self, agent_id: str) -> bytes | None:
        return await self.directory.fetch_key_package(agent_id)

    async def count_key_packages(self, agent_id: str) -> int:
        return await self.directory.count_key_packages(agent_id)

    async def put_card(self, agent_id: str, card_json: bytes, *, max_count: int) -> None:
        await self.directory.put_card(agent_id, card_json, max_count=max_count)

    async def get_cards(self, agent_ids: Sequence[str]) -> dict[str, bytes]:
        return await self.directory.get_cards(agent_ids)

    # -- mailboxes ----------------------------------------------------------------------

    async def mailbox_depth(self, mailbox: str) -> int:
        """Messages waiting in ``mailbox`` (for the relay's outbox gauge)."""
        return await self.mailboxes.mailbox_depth(mailbox)

    async def enqueue(self, mailbox: str, delivery: Delivery, *, max_depth: int) -> bool:
        return await self.mailboxes.enqueue(mailbox, delivery, max_depth=max_depth)

    async def fetch(self, mailbox: str, limit: int) -> list[Delivery]:
        return await self.mailboxes.fetch(mailbox, limit)

    async def ack(self, mailbox: str, keys: Sequence[tuple[str, str]]) -> int:
        return await self.mailboxes.ack(mailbox, keys)

    async def fetch_after(
        self, mailbox: str, after: tuple[str, str] | None, limit: int
    ) -> list[Delivery]:
        return await self.mailboxes.fetch_after(mailbox, after, limit)

    async def commit_mailbox_batch(
        self,
        acks: Sequence[tuple[str, str, str]],
        enqueues: Sequence[tuple[str, Delivery]],
        *,
        max_depth: int,
    ) -> tuple[list[bool], list[bool | LimitExceeded]]:
        return await self.mailboxes.commit_mailbox_batch(acks, enqueues, max_depth=max_depth)

    # -- groups -------------------------------------------------------------------------

    async def group_access(self, group_id: bytes) -> GroupAccess | None:
        return await self.groups.group_access(group_id)

    async def create_group(self, group_id: bytes, members: frozenset[str]) -> GroupAccess:
        return await self.groups.create_group(group_id, members)

    async def append_group(
        self,
        group_id: bytes,
        entry: GroupLogEntry,
        request: GroupAppend,
        *,
        max_entries: int,
        max_members: int,
    ) -> int:
        return await self.groups.append_group(
            group_id, entry, request, max_entries=max_entries, max_members=max_members
        )

    async def fetch_group_log(self, group_id: bytes, after: int, limit: int) -> list[GroupLogEntry]:
        return await self.groups.fetch_group_log(group_id, after, limit)
