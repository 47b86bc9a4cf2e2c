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
  flight at once (see :meth:`NatsBackend._pending`).
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
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs

from sealwire.errors import ConfigurationError
from sealwire.relay.errors import LimitExceeded, RelayUnavailable
from sealwire.relay.errors import NotFoundError as GroupNotFound
from sealwire.relay.wire import Delivery, FetchedPrekeys, GroupLogEntry, b64d, b64e
from sealwire_relay._backend import GroupAccess, GroupAppend, next_access
from sealwire_relay._limits import DEDUPE_RETENTION_SECONDS

try:
    import nats
    import nats.aio.client
    import nats.errors
    from nats.js.api import DiscardPolicy, StorageType, StreamConfig
    from nats.js.errors import APIError, NoStreamResponseError, NotFoundError
except ImportError:  # pragma: no cover - the optional extra is not installed
    nats = None  # type: ignore[assignment]

__all__ = ["NatsBackend"]

log = logging.getLogger("sealwire.relay.nats")

# One attempt to open a connection to a NATS server waits at most this (a host
# that drops packets, rather than refusing); nats-py's own default.
CONNECT_TIMEOUT_SECONDS = 5
# After a drop, nats-py tries a server again every this many seconds (its default).
RECONNECT_WAIT_SECONDS = 2

# Acknowledgements (and card look-ups) are carried out this many at a time.
ACK_PARALLEL = 32
# fetch_after reads the pending messages from the oldest and skips those up to
# the one named: it reads this many more than asked (a stream's window of
# unacknowledged messages), never more than FETCH_AFTER_MAX in one go.
FETCH_AFTER_SLACK = 256
FETCH_AFTER_MAX = 1024

WRONG_LAST_SEQUENCE = 10071  # JetStream error code: Nats-Expected-Last-Subject-Sequence failed
# Concurrent appends to one group retry their compare-and-set this many times
# before answering "busy"; each retry means another append succeeded.
MAX_APPEND_RETRIES = 200
# Depth counts are kept for this many mailboxes (recounted from the stream after).
MAX_DEPTH_CACHE = 100_000
EXPECT = "Nats-Expected-Last-Subject-Sequence"
MSG_ID = "Nats-Msg-Id"
# JetStream error codes of a delete whose sequence is gone already.
NO_SUCH_MESSAGE = frozenset({10037, 10057})
# Sequence numbers of pending messages remembered (from enqueues and fetches) so
# that an ack deletes by sequence without reading the message again; a key
# forgotten beyond this is looked up once by its subject.
MAX_SEQ_CACHE = 200_000
# A JetStream API request not answered within this is a failure (nats-py's default).
API_TIMEOUT_SECONDS = 5.0
# Direct gets in flight at once for one fetch (see NatsBackend._pending).
MAX_FETCH_WINDOW = 128
# A slot without its message is an orphan (its relay process died between the
# two publishes) once older than this: an enqueue in progress finishes within a
# few API timeouts, so a younger one may still get its message.
ORPHAN_SLOT_SECONDS = 4 * API_TIMEOUT_SECONDS
SLOT_HEADER = "Sw-Slot"
# JetStream replicates a stream at most five ways.
MAX_REPLICAS = 5
SLOT_AT = "Sw-Slot-At"  # when the slot was taken (wall clock of the relay process)
# JetStream's answer to a publish beyond max_msgs_per_subject with
# discard_new_per_subject ("maximum messages per subject exceeded").
SUBJECT_FULL = 10077
# A publish that no stream received ("no responders": a stream being created or
# moving to a new leader) stored nothing; it is sent again after these pauses.
NO_STREAM_RETRY_SECONDS = (0.05, 0.1, 0.2, 0.4, 0.8)
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

    def __init__(
        self, servers: Sequence[str], *, prefix: str = "SW", shared: bool = False, replicas: int = 1
    ) -> None:
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
        self._seqs: OrderedDict[tuple[str, str, str], int] = OrderedDict()
        # Shared mode (see the module docstring): slot sequences of pending messages,
        # and the depth limit the slot stream is configured with.
        self._shared = shared
        if not 1 <= replicas <= MAX_REPLICAS:
            raise ConfigurationError(f"nats replicas must be 1 to {MAX_REPLICAS}")
        self._replicas = replicas
        self._slots: OrderedDict[tuple[str, str, str], int] = OrderedDict()
        self._slot_depth: int | None = None
        self._records: dict[int, GroupAccess] = {}
        self._last_error: str | None = None  # the client's last reported error, one line

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
        """Connect and create the streams: one attempt, RelayUnavailable when NATS cannot
        be reached (the relay retries, see ``backend_start_seconds``).

        The first connection is made with nats-py's fewest retries (with its
        defaults they last two minutes and each logs a traceback); once connected,
        the client reconnects by itself for ever after a drop, and the relay's
        health says so meanwhile.
        """
        if self._nc is not None:
            return
        where = ", ".join(_without_credentials(u) for u in self._servers)
        nc = nats.aio.client.Client()
        try:
            await nc.connect(
                servers=self._servers,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                # One attempt: each server tried twice in a row (nats-py's least),
                # then NoServersError; its default is 60 tries 2 s apart.
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
        except (OSError, nats.errors.Error, TimeoutError) as exc:
            await _close_quietly(nc)
            # NoServersError says only that every server failed: say how the last one did.
            why = self._last_error if isinstance(exc, nats.errors.NoServersError) else None
            self._last_error = None
            raise RelayUnavailable(f"cannot reach NATS at {where}: {why or _reason(exc)}") from None
        # From now on a drop is followed by reconnection attempts without end (the
        # options nats-py reads at each drop).
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = RECONNECT_WAIT_SECONDS
        self._nc, self._js = nc, nc.jetstream()
        try:
            await self._add_streams()
        except (APIError, nats.errors.Error, TimeoutError) as exc:
            await self.close()
            raise RelayUnavailable(
                f"NATS at {where} refused the relay's streams: {_reason(exc)}"
            ) from None
        log.info("connected to NATS at %s", where)

    async def _on_error(self, exc: Exception) -> None:
        # nats-py reports every failed (re)connection attempt here: one line, no traceback.
        self._last_error = _reason(exc)
        log.debug("NATS client error: %s", self._last_error)

    async def _on_disconnected(self) -> None:
        if self._nc is not None:  # not a failed first attempt: a connection was lost
            log.warning("NATS connection lost; reconnecting")

    async def _on_reconnected(self) -> None:
        log.warning("NATS connection restored")

    async def _add_streams(self) -> None:
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
                allow_direct=True,  # gets served without the stream leader's API queue
                num_replicas=self._replicas,
            )
            try:
                await self._js.add_stream(config)
            except APIError:
                await self._js.update_stream(config)

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None  # first: a closing is no lost connection
        if nc is not None:
            await nc.close()

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

    async def _last_direct(self, stream: str, subject: str) -> Any:
        """As :meth:`_last`, by a direct get: served without the stream's API queue
        (about 1.5 times the rate under load)."""
        try:
            return await self._js.get_msg(stream, subject=subject, direct=True)
        except NotFoundError:
            return None

    async def _next(self, stream: str, subject: str, seq: int) -> Any:
        try:
            return await self._js.get_msg(stream, seq=max(seq, 1), subject=subject, next=True)
        except NotFoundError:
            return None

    async def _publish(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> Any:
        """JetStream publish, sent again while no stream answers (nothing was stored)."""
        for pause in NO_STREAM_RETRY_SECONDS:
            try:
                return await self._js.publish(subject, data, headers=headers)
            except NoStreamResponseError:
                await asyncio.sleep(pause)
        return await self._js.publish(subject, data, headers=headers)

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
            ack = await self._publish(
                subject, data, headers={EXPECT: str(expect), **(headers or {})}
            )
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                return None
            raise
        return int(ack.seq)

    async def _delete(self, stream: str, seq: int) -> bool:
        """Delete one message; False when it is gone already (taken or acknowledged).

        Sent as ``no_erase``: nats-py's ``delete_msg`` asks the server to overwrite
        the message in its file first, which made an ack ~5 times slower. The relay
        stores ciphertext and public keys only (the SQLite backend does not
        overwrite either).
        """
        request = json.dumps({"seq": seq, "no_erase": True}).encode()
        reply = await self._nc.request(
            f"$JS.API.STREAM.MSG.DELETE.{stream}", request, timeout=API_TIMEOUT_SECONDS
        )
        answer = json.loads(reply.data)
        error = answer.get("error")
        if error is None:
            return bool(answer.get("success"))
        if error.get("code") == 404 or error.get("err_code") in NO_SUCH_MESSAGE:
            return False
        raise RelayUnavailable(f"NATS refused a delete: {error.get('err_code')}")

    async def _take(self, stream: str, subject: str) -> Any:
        """Delete and return the first message on ``subject`` (wildcards allowed) or None."""
        seq = 1
        while True:
            msg = await self._next(stream, subject, seq)
            if msg is None:
                return None
            if await self._delete(stream, msg.seq):
                return msg
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
            await self._publish(self._dir("b", agent_id, b), json.dumps(record).encode())

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
            await self._publish(subject, card_json)

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
        return await self._last_direct(f"{self._s}_ACKS", tomb) is not None

    async def _depth_of(self, mailbox: str) -> int:
        if mailbox not in self._depth:
            if len(self._depth) >= MAX_DEPTH_CACHE:
                self._depth.clear()
            count = await self._count(f"{self._s}_MBOX", self._mb(mailbox, ">"))
            self._depth.setdefault(mailbox, count)  # an enqueue meanwhile counted already
        return self._depth[mailbox]

    async def mailbox_depth(self, mailbox: str) -> int:
        """Messages waiting in ``mailbox`` (for the relay's outbox gauge)."""
        async with self._io():
            if self._shared:  # other processes admit messages too: count them now
                return await self._count(f"{self._s}_MBOX", self._mb(mailbox, ">"))
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

    # -- shared mode: the depth kept by the server ----------------------------------------

    def _slot(self, mailbox: str) -> str:
        return f"{self._p}.slot.{b64e(mailbox.encode())}"

    async def _slot_stream(self, max_depth: int) -> None:
        """Create (or re-limit) ``P_SLOT`` for ``max_depth`` slots per mailbox."""
        if self._slot_depth == max_depth:
            return
        config = StreamConfig(
            name=f"{self._s}_SLOT",
            subjects=[f"{self._p}.slot.>"],
            storage=StorageType.FILE,
            max_msgs_per_subject=max_depth,
            discard=DiscardPolicy.NEW,
            discard_new_per_subject=True,
            allow_direct=True,
            num_replicas=self._replicas,
        )
        try:
            await self._js.add_stream(config)
        except APIError:
            await self._js.update_stream(config)
        self._slot_depth = max_depth

    async def _take_slot(self, mailbox: str, subject: str) -> int | None:
        """Publish a slot for the message on ``subject``; its sequence, None when full."""
        try:
            ack = await self._publish(
                self._slot(mailbox), subject.encode(), headers={SLOT_AT: repr(time.time())}
            )
        except APIError as exc:
            if exc.err_code == SUBJECT_FULL:
                return None
            raise
        return int(ack.seq)

    async def _free_orphans(self, mailbox: str) -> int:
        """Delete the slots of ``mailbox`` whose message never came; how many."""
        freed, seq = 0, 1
        stream, now = f"{self._s}_SLOT", time.time()
        while True:
            slot = await self._next(stream, self._slot(mailbox), seq)
            if slot is None:
                return freed
            seq = int(slot.seq) + 1
            if now - _stored_at(slot) < ORPHAN_SLOT_SECONDS:
                continue
            msg = await self._last_direct(f"{self._s}_MBOX", bytes(slot.data).decode())
            named = None if msg is None else (msg.headers or {}).get(SLOT_HEADER)
            if named != str(slot.seq) and await self._delete(stream, int(slot.seq)):
                freed += 1

    async def _enqueue_shared(self, mailbox: str, delivery: Delivery, max_depth: int) -> bool:
        mid, sender = delivery.message_id, delivery.sender
        subject = self._mb(mailbox, b64e(mid.encode()), sender)
        async with self._io():
            await self._slot_stream(max_depth)
            slot = await self._take_slot(mailbox, subject)
            if slot is None and await self._free_orphans(mailbox):
                slot = await self._take_slot(mailbox, subject)
            if slot is None:
                if await self._last_direct(f"{self._s}_MBOX", subject) is not None:
                    return False  # pending already: a duplicate, even when the mailbox is full
                raise LimitExceeded("mailbox_depth", f"mailbox holds {max_depth} messages")
            fresh = False
            try:
                extra = {SLOT_HEADER: str(slot)}
                if not await self._store_new(mailbox, subject, delivery, extra):
                    return False
                self._remember_slot(mailbox, sender, mid, slot)
                fresh = True
                return True
            finally:
                if not fresh:
                    await self._delete(f"{self._s}_SLOT", slot)

    def _remember_slot(self, mailbox: str, sender: str, message_id: str, slot: int) -> None:
        key = (mailbox, sender, message_id)
        self._slots[key] = slot
        self._slots.move_to_end(key)
        while len(self._slots) > MAX_SEQ_CACHE:
            self._slots.popitem(last=False)

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
        subject = self._mb(mailbox, b64e(mid.encode()), sender)
        async with self._io():
            if await self._depth_of(mailbox) >= max_depth:
                if await self._last_direct(f"{self._s}_MBOX", subject) is not None:
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
            await self._delete(f"{self._s}_MBOX", published)
            return False
        self._remember(mailbox, delivery.sender, delivery.message_id, published)
        return True

    async def _publish_new(self, subject: str, data: bytes, headers: dict[str, str]) -> int | None:
        """Publish unless the subject holds a message or the id is a recent duplicate;
        the new sequence, or None for a duplicate."""
        try:
            ack = await self._publish(subject, data, headers={EXPECT: "0", **headers})
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                return None
            raise
        return None if ack.duplicate else int(ack.seq)

    async def _next_direct(self, subject: str, seq: int) -> Any:
        try:
            return await self._js.get_msg(
                f"{self._s}_MBOX", seq=max(seq, 1), subject=subject, next=True, direct=True
            )
        except NotFoundError:
            return None

    async def _pending(self, mailbox: str, subject: str, limit: int) -> list[_Msg]:
        """The first ``limit`` messages on ``subject`` (oldest first), by direct gets.

        A round asks, at once, for the first message at or after each of ``w``
        consecutive sequence numbers: together the answers are exactly the
        mailbox's messages in that range plus the first one beyond it, so a
        round never misses one. ``w`` starts at 1 (a mailbox with one message
        costs one request) and doubles while the mailbox's messages are dense in
        the stream (a backlog), halving when they are sparse: a backlog of 100
        comes in about 7 round trips, without a consumer.
        """
        start = self._floor.get(mailbox, 1)
        found: list[_Msg] = []
        window = 1
        while len(found) < limit:
            want = min(window, limit - len(found), MAX_FETCH_WINDOW)
            answers = await asyncio.gather(
                *(self._next_direct(subject, start + i) for i in range(want))
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
        async with self._io():
            msgs = await self._pending(mailbox, self._mb(mailbox, ">"), limit)
            if msgs and len(self._floor) < MAX_DEPTH_CACHE:
                # Messages are only ever deleted below the first pending one, so
                # later scans of this mailbox may start there.
                self._floor[mailbox] = msgs[0].seq
        out = []
        for msg in msgs:
            _, _, mid, sender = msg.subject.rsplit(".", 3)
            message_id = b64d(mid, "message_id").decode()
            self._remember(mailbox, sender, message_id, msg.seq)
            slot = msg.headers.get(SLOT_HEADER)
            if slot is not None and slot.isdigit():
                self._remember_slot(mailbox, sender, message_id, int(slot))
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
        """Tombstone and delete by the sequence the fetch (or enqueue) saw: no re-read.

        A key this process never saw (fetched through another relay process) is
        looked up by its subject once. The tombstone (the relay's record of the
        id, kept DEDUPE_RETENTION_SECONDS) and the delete go out together.
        """
        subject = self._mb(mailbox, b64e(mid.encode()), sender)
        seq = self._seqs.pop((mailbox, sender, mid), None)
        slot = self._slots.pop((mailbox, sender, mid), None)
        cached = seq is not None
        if seq is None:
            last = await self._last_direct(f"{self._s}_MBOX", subject)
            if last is None:
                return 0  # unknown or acknowledged already
            seq = int(last.seq)
            named = (last.headers or {}).get(SLOT_HEADER)
            slot = int(named) if named is not None and named.isdigit() else None

        async def delete(seq: int, cached: bool) -> int:
            if await self._delete(f"{self._s}_MBOX", seq):
                return 1
            if not cached:
                return 0  # acknowledged concurrently
            # The remembered copy is gone (acknowledged through another process):
            # a newer copy may be pending under the same key.
            last = await self._last_direct(f"{self._s}_MBOX", subject)
            return 0 if last is None else await delete(int(last.seq), False)

        _, deleted = await asyncio.gather(
            self._publish(self._tomb(mailbox, mid, sender), b""), delete(seq, cached)
        )
        if deleted and self._shared and slot is not None:
            # The message is gone: free its slot (a crash right here leaves an
            # orphan slot, freed when the mailbox is full).
            await self._delete(f"{self._s}_SLOT", slot)
        return deleted

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
                    ack = await self._publish(self._g("a", group_id), stored.to_json())
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


def _stored_at(slot: Any) -> float:
    """When ``slot`` was taken (0 when it does not say: old enough to check)."""
    try:
        return float((slot.headers or {}).get(SLOT_AT, 0.0))
    except ValueError:
        return 0.0


def _msg_id(subject: str) -> str:
    """The ``Nats-Msg-Id`` of a mailbox message: a digest of its subject (mailbox,
    message id, sender), so that it has a bounded length whatever the ids."""
    return hashlib.sha256(subject.encode()).hexdigest()


def _without_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part (never put in logs or errors)."""
    scheme, sep, rest = url.partition("://")
    host = rest.rpartition("@")[2]
    return f"{scheme}{sep}{host}" if sep else host


def _reason(exc: BaseException) -> str:
    """What went wrong, in one line: the exception's text, else its type's name."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _close_quietly(nc: Any) -> None:
    with contextlib.suppress(Exception):
        await nc.close()
