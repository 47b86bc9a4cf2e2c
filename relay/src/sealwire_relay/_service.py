"""The relay's operations, independent of HTTP: checks, limits, routing, storage.

Each public coroutine takes the authenticated :class:`Principal` and the
decoded JSON body and returns the JSON answer. Authorization rules:

* an agent publishes and counts only its own prekeys and KeyPackages, and
  reads and acknowledges only its own mailbox;
* an agent publishes only its own signed card (verified here); anyone
  authenticated may fetch cards, another agent's prekeys or KeyPackage, and
  send to any mailbox;
* a group's log and member list are open to its readers only (its members,
  the members before its latest commit, agents admitted for an external
  join); the first agent to set a group's members creates it (and must be
  among them); after that the list changes only with a commit appended by a
  member, atomically (the rules: :mod:`sealwire_relay._backend`);
* only configured peer relays may deliver federated messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from sealwire.errors import DecodeError, SealwireError
from sealwire.identity import verify_card
from sealwire.relay.errors import ForbiddenError, LimitExceeded, NotFoundError
from sealwire.relay.wire import (
    MAX_CARDS_PER_FETCH,
    MAX_ID_CHARS,
    Delivery,
    GroupLogEntry,
    b64d,
    b64e,
    canonical_card_json,
    delivery_to_json,
    entry_to_json,
    get_agent_id,
    get_agent_ids,
    get_int,
    get_str,
    get_str_list,
    parse_mailbox_address,
)
from sealwire_relay._auth import Principal
from sealwire_relay._backend import GroupAppend, RelayBackend
from sealwire_relay._limits import RateLimiter, RelayLimits
from sealwire_relay._metrics import Metrics

__all__ = ["Notifier", "Poll", "RelayService", "outbox_name"]

log = logging.getLogger("sealwire.relay")

# A federation delivery carries at most this many messages: bounds one request's
# work and body (the body limit applies too).
MAX_FORWARD_BATCH = 100
MAX_ACK_IDS = 1_000
DEFAULT_FETCH = 100
# The outbox depth gauge of a backend that cannot count a mailbox is found by
# fetching at most this many entries at each scrape: the gauge saturates there,
# which still says "a peer is not taking its messages" at a bounded cost.
OUTBOX_GAUGE_SCAN = 1_000


OUTBOX_PREFIX = "outbox:"


def outbox_name(peer_relay_id: str) -> str:
    """The mailbox holding messages accepted for agents homed on ``peer_relay_id``."""
    return OUTBOX_PREFIX + peer_relay_id


def dead_letter_name(peer_relay_id: str) -> str:
    """Where messages a peer relay refused for good are kept (never dropped silently)."""
    return "refused:" + peer_relay_id


class Notifier:
    """Wakes coroutines watching a key (a mailbox, a group, an outbox) when it changes.

    A reader watches for the whole of its loop: it clears its event, reads,
    then waits on the event; a change stored while it was reading has set the
    event already, so no wake-up is lost between the read and the wait.
    """

    def __init__(self) -> None:
        self._watchers: dict[str, set[asyncio.Event]] = {}

    def notify(self, key: str) -> None:
        for event in self._watchers.get(key, ()):
            event.set()

    @contextlib.contextmanager
    def watching(self, *keys: str) -> Iterator[asyncio.Event]:
        """An event set by every :meth:`notify` of any of ``keys`` while the block runs."""
        event = asyncio.Event()
        for key in keys:
            self._watchers.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            for key in keys:
                watchers = self._watchers.get(key, set())
                watchers.discard(event)
                if not watchers:
                    self._watchers.pop(key, None)


class Poll:
    """Sets ``wake`` (and :attr:`due`) every ``seconds`` while it runs: a watcher that
    also polls needs one timer per period, not a timeout for every wait."""

    def __init__(self, wake: asyncio.Event, seconds: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake, self._seconds = wake, seconds
        self.due = False
        self._timer = self._loop.call_later(seconds, self._tick)

    def __enter__(self) -> Poll:
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def _tick(self) -> None:
        self.due = True
        self._wake.set()
        self._timer = self._loop.call_later(self._seconds, self._tick)


async def wait_any(events: Sequence[asyncio.Event], timeout: float) -> None:
    """Until one of ``events`` is set, or ``timeout`` seconds (a poll) have passed."""
    if len(events) == 1:  # one event to wait on needs no task of its own
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await events[0].wait()
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


class RelayService:
    """The operations of one relay over a backend."""

    def __init__(
        self,
        *,
        backend: RelayBackend,
        public_url: str,
        limits: RelayLimits,
        peers: Mapping[str, str],
        clock: Callable[[], float],
    ) -> None:
        self.backend = backend
        self.public_url = public_url.rstrip("/")
        self.limits = limits
        self.peer_urls = {rid: url.rstrip("/") for rid, url in peers.items()}
        self._peer_by_url = {url: rid for rid, url in self.peer_urls.items()}
        self.clock = clock
        self.notifier = Notifier()
        self.metrics = Metrics()
        # Fetches of one-time keys, by requester and by target (see RelayLimits).
        self._fetch_by_requester = RateLimiter(
            limits.key_fetch_rate_per_requester, limits.key_fetch_burst_per_requester
        )
        self._fetch_by_target = RateLimiter(
            limits.key_fetch_rate_per_target, limits.key_fetch_burst_per_target
        )
        # Group log reads in flight, by (group, position): see :meth:`group_tail`.
        self._tail_reads: dict[tuple[bytes, int], asyncio.Future[_GroupTail]] = {}

    def _check_key_fetch(self, who: Principal, kind: str, target: str) -> None:
        """Take a token from the requester's and the target's fetch buckets."""
        # A token is taken from both buckets or from neither: a requester refused
        # on its own bucket must not spend the target's (nor the other way round).
        now = self.clock()
        target_key = f"{kind}:{target}"
        checks = [(self._fetch_by_target, target_key, "key_fetch_target")]
        if not who.is_peer_relay:
            checks.insert(0, (self._fetch_by_requester, who.agent_id, "key_fetch"))
        for limiter, key, limit in checks:
            wait = limiter.wait(key, now)
            if wait > 0:
                retry = max(round(wait, 3), 0.001)
                raise LimitExceeded(limit, "too many key fetches", retry_after=retry)
        for limiter, key, _ in checks:
            limiter.take(key, now)

    def _low(self, kind: str, agent_id: str, what: str, left: int) -> None:
        if left < self.limits.prekey_low_water:
            self.metrics.inc("sealwire_relay_prekey_pool_low_total", kind=kind)
            log.warning(
                "%s of agent %s has %d keys left (low water %d): the agent should replenish",
                what,
                agent_id,
                left,
                self.limits.prekey_low_water,
            )

    async def refresh_gauges(self) -> None:
        """Read the gauges that come from storage (the outbox depth of each peer)."""
        counter = getattr(self.backend, "mailbox_depth", None)
        for peer in self.peer_urls:
            if counter is not None:
                depth = int(await counter(outbox_name(peer)))
            else:
                depth = len(await self.backend.fetch(outbox_name(peer), OUTBOX_GAUGE_SCAN))
            self.metrics.set("sealwire_relay_outbox_depth", depth, peer=peer)

    def _blob(self, value: object, field: str, what: str) -> bytes:
        """Decode a base64url blob, refusing one over ``max_message_bytes`` before decoding."""
        limit = self.limits.max_message_bytes
        if isinstance(value, str) and len(value) > (limit * 4 + 2) // 3:
            raise LimitExceeded("message_size", f"{what} exceeds {limit} bytes")
        data = b64d(value, field)
        self.limits.check_size(data, what)
        return data

    # -- prekeys ----------------------------------------------------------------

    async def publish_prekeys(self, who: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
        binding = get_str(body, "binding")
        bundle = self._blob(body.get("bundle"), "bundle", "prekey bundle")
        raw = body.get("one_time", {})
        if not isinstance(raw, dict) or len(raw) > self.limits.max_pools:
            raise DecodeError(f"expected at most {self.limits.max_pools} pools", field="one_time")
        one_time: dict[str, dict[str, bytes]] = {}
        for pool, keys in raw.items():
            if not isinstance(keys, dict) or len(keys) > self.limits.max_one_time_per_pool:
                raise LimitExceeded("prekeys", f"pool {pool[:40]!r} is too large or malformed")
            if not pool or len(pool) > MAX_ID_CHARS:
                raise DecodeError("bad pool name", field="one_time")
            one_time[pool] = {}
            for kid, blob in keys.items():
                if not kid or len(kid) > MAX_ID_CHARS:
                    raise DecodeError("bad key id", field=f"one_time.{pool}")
                one_time[pool][kid] = self._blob(blob, f"one_time.{pool}", "one-time prekey")
        await self.backend.publish_prekeys(
            who.agent_id,
            binding,
            bundle,
            one_time,
            max_per_pool=self.limits.max_one_time_per_pool,
            max_pools=self.limits.max_pools,
        )
        return {}

    async def fetch_prekeys(self, who: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
        agent_id = get_agent_id(body)
        binding = get_str(body, "binding")
        self._check_key_fetch(who, "prekeys", agent_id)
        fetched = await self.backend.fetch_prekeys(agent_id, binding)
        if fetched is None:
            raise NotFoundError("no prekey bundle for this agent and binding")
        if fetched.one_time:
            counts = await self.backend.count_prekeys(agent_id, binding)
            for pool in fetched.one_time:
                self._low("prekeys", agent_id, f"prekey pool {pool[:40]!r}", counts.get(pool, 0))
        return {
            "bundle": b64e(fetched.bundle),
            "one_time": {
                pool: None if key is None else {"id": key[0], "key": b64e(key[1])}
                for pool, key in fetched.one_time.items()
            },
        }

    async def count_prekeys(self, who: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
        return {"counts": await self.backend.count_prekeys(who.agent_id, get_str(body, "binding"))}

    # -- KeyPackages ----------------------------------------------------------

    async def publish_key_package(self, who: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
        kp = self._blob(body.get("key_package"), "key_package", "KeyPackage")
        await self.backend.publish_key_package(
            who.agent_id,
            get_str(body, "key_package_id"),
            kp,
            max_count=self.limits.max_key_packages,
        )
        return {}

    async def fetch_key_package(self, who: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
        agent_id = get_agent_id(body)
        self._check_key_fetch(who, "key_packages", agent_id)
        kp = await self.backend.fetch_key_package(agent_id)
        if kp is None:
            raise NotFoundError("no KeyPackage left for this agent")
        left = await self.backend.count_key_packages(agent_id)
        self._low("key_packages", agent_id, "KeyPackage stock", left)
        return {"key_package": b64e(kp)}

    async def count_key_packages(self, who: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
        return {"count": await self.backend.count_key_packages(who.agent_id)}

    # -- card directory -----------------------------------------------------------

    async def publish_card(self, who: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
        """Verify the caller's own signed card and store it in place of the previous one."""
        card = body.get("card")
        data = canonical_card_json(card, max_bytes=self.limits.max_card_bytes)
        assert isinstance(card, dict)  # canonical_card_json checked it
        try:
            verified = verify_card(card)
        except DecodeError:
            raise
        except SealwireError:  # a bad signature, or an agent id that is not its key's
            raise ForbiddenError("agent card not verified") from None
        if verified.agent_id != who.agent_id:
            raise ForbiddenError("an agent publishes only its own card")
        await self.backend.put_card(who.agent_id, data, max_count=self.limits.max_cards)
        return {}

    async def fetch_cards(self, who: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
        """The stored cards of the named agents (unknown ones are absent), unverified."""
        ids = get_agent_ids(body, "agent_ids", max_items=MAX_CARDS_PER_FETCH)
        found = await self.backend.get_cards(ids)
        return {"cards": {agent_id: json.loads(data) for agent_id, data in found.items()}}

    # -- mailboxes --------------------------------------------------------------

    async def send(self, who: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
        mailbox, delivery = self.route_send(who, body)
        fresh = await self._enqueue(mailbox, delivery)
        answer: dict[str, Any] = {"duplicate": not fresh}
        if mailbox.startswith(OUTBOX_PREFIX):
            answer["forwarded_to"] = mailbox.removeprefix(OUTBOX_PREFIX)
        return answer

    async def _enqueue(self, mailbox: str, delivery: Delivery) -> bool:
        """Store ``delivery`` in ``mailbox`` (an agent's, or a federation outbox) and
        wake its readers; False for a duplicate."""
        fresh = await self.backend.enqueue(
            mailbox, delivery, max_depth=self.limits.max_mailbox_depth
        )
        if fresh:
            self._count_enqueued(delivery.envelope)
            self.notifier.notify(mailbox)
        return fresh

    def _count_enqueued(self, envelope: bytes) -> None:
        self.metrics.inc("sealwire_relay_messages_enqueued_total")
        self.metrics.inc("sealwire_relay_message_bytes_total", len(envelope))

    async def fetch(self, who: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
        limit = self._limit(body)
        batch = await self.backend.fetch(who.agent_id, limit)
        return {"messages": [delivery_to_json(d) for d in batch]}

    async def ack(self, who: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
        """``{"acks": [{"sender", "message_id"}]}``: by sender and id, never by id alone."""
        acks = body.get("acks")
        if not isinstance(acks, list) or len(acks) > MAX_ACK_IDS:
            raise DecodeError(f"expected a list of at most {MAX_ACK_IDS} acks", field="acks")
        keys = []
        for item in acks:
            if not isinstance(item, dict):
                raise DecodeError("expected an object", field="acks")
            keys.append((get_str(item, "sender"), get_str(item, "message_id")))
        removed = await self.backend.ack(who.agent_id, keys)
        if removed:
            self.notifier.notify(acked_key(who.agent_id))
        self.metrics.inc("sealwire_relay_messages_acked_total", removed)
        return {"acknowledged": removed}

    def _limit(self, body: Mapping[str, Any]) -> int:
        if "limit" not in body:
            return DEFAULT_FETCH
        return get_int(body, "limit", low=1, high=self.limits.max_fetch)

    # -- batches (the stream) ---------------------------------------------------------

    def route_send(
        self, who: Principal, body: Mapping[str, Any], envelope: bytes | None = None
    ) -> tuple[str, Delivery]:
        """The checks of a send (over HTTP or the stream): the mailbox it goes to
        (the recipient's, or the federation outbox of its home relay) and what is
        stored there. ``envelope`` is given when it came as bytes (a binary frame),
        else it is the body's base64 ``envelope``. DecodeError, LimitExceeded or
        NotFoundError when refused."""
        home, agent_id = parse_mailbox_address(get_str(body, "recipient", max_chars=2048))
        message_id = get_str(body, "message_id")
        if envelope is None:
            envelope = self._blob(body.get("envelope"), "envelope", "envelope")
        else:
            self.limits.check_size(envelope, "envelope")
        now = self.clock()
        if home is None or home == self.public_url:
            delivery = Delivery(
                message_id=message_id, sender=who.agent_id, envelope=envelope, received_at=now
            )
            return agent_id, delivery
        peer = self._peer_by_url.get(home)
        if peer is None:
            raise NotFoundError(f"no federation link to the relay at {home[:200]}")
        item = {"recipient": agent_id, "message_id": message_id, "envelope": b64e(envelope)}
        wrapped = Delivery(
            message_id=f"{agent_id}/{who.agent_id}/{message_id}",
            sender=who.agent_id,
            envelope=json.dumps(item).encode(),
            received_at=now,
        )
        return outbox_name(peer), wrapped

    async def commit_mailbox_batch(
        self, acks: list[tuple[str, str, str]], enqueues: list[tuple[str, Delivery]]
    ) -> tuple[list[bool], list[bool | LimitExceeded]]:
        """Commit acknowledgements and sends together (see the backend), then wake
        whoever waits on a mailbox that changed: its pushers and forwarders."""
        acked, stored = await self.backend.commit_mailbox_batch(
            acks, enqueues, max_depth=self.limits.max_mailbox_depth
        )
        for mailbox in {m for (m, _), fresh in zip(enqueues, stored, strict=True) if fresh is True}:
            self.notifier.notify(mailbox)
        for mailbox in {m for (m, _, _), done in zip(acks, acked, strict=True) if done}:
            self.notifier.notify(acked_key(mailbox))
        return acked, stored

    # -- federation (receiving side) -----------------------------------------------

    async def federation_deliver(self, who: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
        if not who.is_peer_relay:
            raise ForbiddenError("only configured peer relays may deliver")
        items = body.get("items")
        if not isinstance(items, list) or len(items) > MAX_FORWARD_BATCH:
            raise DecodeError(f"expected at most {MAX_FORWARD_BATCH} items", field="items")
        return {"results": [await self._accept_forwarded(item) for item in items]}

    async def _accept_forwarded(self, item: object) -> str:
        """``accepted``, ``duplicate``, ``retry`` (a limit; try later) or ``refused``."""
        try:
            if not isinstance(item, dict):
                raise DecodeError("expected an object", field="items")
            envelope = self._blob(item.get("envelope"), "envelope", "envelope")
            delivery = Delivery(
                message_id=get_str(item, "message_id"),
                sender=get_agent_id(item, "sender"),
                envelope=envelope,
                received_at=float(get_int(item, "received_at_ms")) / 1000,
            )
            fresh = await self._enqueue(get_agent_id(item, "recipient"), delivery)
        except LimitExceeded as exc:
            return "refused" if exc.limit == "message_size" else "retry"
        except DecodeError:
            return "refused"
        return "accepted" if fresh else "duplicate"

    # -- groups -------------------------------------------------------------------

    async def require_member(self, who: Principal, group_id: bytes) -> frozenset[str]:
        """The group's member list, if ``who`` may read its log; else Forbidden/NotFound."""
        access = await self.backend.group_access(group_id)
        if access is None:
            raise NotFoundError("no such group")
        if who.agent_id not in access.readers():
            raise ForbiddenError("not a member of this group")
        return access.members

    def _members(self, body: Mapping[str, Any], name: str) -> frozenset[str]:
        wanted = get_str_list(body, name, max_items=self.limits.max_group_members)
        return frozenset(get_agent_id({"m": m}, "m") for m in wanted)

    async def set_group_members(self, who: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a group with its first member list (a repeat with the same list is
        accepted: a retry). An existing group's list changes only with a commit."""
        group_id = _group_id(body)
        members = self._members(body, "members")
        if body.get("epoch") is not None:
            raise ForbiddenError("a member list changes only with a commit (append_commit)")
        if who.agent_id not in members:
            raise ForbiddenError("the creator of a group must be one of its members")
        access = await self.backend.create_group(group_id, members)
        if access.members != members or access.last_commit is not None:
            raise ForbiddenError("the group exists: its list changes only with a commit")
        return {"members": sorted(members)}

    async def get_group_members(self, who: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
        return {"members": sorted(await self.require_member(who, _group_id(body)))}

    async def append(self, who: Principal, body: Mapping[str, Any], kind: str) -> dict[str, Any]:
        group_id = _group_id(body)
        message = self._blob(body.get("message"), "message", "group message")
        if kind == "commit":
            request = GroupAppend(
                members=self._members(body, "members") if "members" in body else None,
                supersedes=get_int(body, "supersedes") if "supersedes" in body else None,
            )
        else:
            admit = self._members(body, "admit") if "admit" in body else frozenset()
            request = GroupAppend(admit=admit)
        entry = GroupLogEntry(
            seq=0,
            kind=kind,
            epoch=get_int(body, "epoch"),
            sender=who.agent_id,
            message=message,
            received_at=self.clock(),
        )
        seq = await self.backend.append_group(
            group_id,
            entry,
            request,
            max_entries=self.limits.max_group_log,
            max_members=self.limits.max_group_members,
        )
        self.notifier.notify(group_key(group_id))
        return {"seq": seq}

    async def group_tail(
        self, who: Principal, group_id: bytes, after: int, limit: int
    ) -> tuple[tuple[int, str], ...]:
        """The log entries after ``after`` as (seq, WebSocket text), if ``who`` may read them.

        A post wakes every member's socket at once, each asking for the same
        entries: concurrent reads of one (group, position) share one backend
        read and one encoding, and each reader's membership is checked against
        the member list that read returned.
        """
        key = (group_id, after)
        read = self._tail_reads.get(key)
        if read is None:
            read = asyncio.ensure_future(self._read_tail(group_id, after, limit))
            self._tail_reads[key] = read
            read.add_done_callback(functools.partial(self._tail_read_done, key))
        readers, texts = await asyncio.shield(read)  # one reader leaving stops no other
        if who.agent_id not in readers:
            raise ForbiddenError("not a member of this group")
        return texts

    async def _read_tail(self, group_id: bytes, after: int, limit: int) -> _GroupTail:
        access = await self.backend.group_access(group_id)
        if access is None:
            raise NotFoundError("no such group")
        entries = await self.backend.fetch_group_log(group_id, after, limit)
        return access.readers(), tuple((e.seq, json.dumps(entry_to_json(e))) for e in entries)

    def _tail_read_done(self, key: tuple[bytes, int], read: asyncio.Future[_GroupTail]) -> None:
        if self._tail_reads.get(key) is read:
            del self._tail_reads[key]
        if not read.cancelled():
            read.exception()  # retrieved here: every reader may have left

    async def group_log(self, who: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
        group_id = _group_id(body)
        await self.require_member(who, group_id)
        after = get_int(body, "after") if "after" in body else 0
        limit = self._limit(body)
        entries = await self.backend.fetch_group_log(group_id, after, limit)
        return {"entries": [entry_to_json(e) for e in entries]}


# Who may read a group's log, and its entries after a position as WebSocket texts.
_GroupTail = tuple[frozenset[str], tuple[tuple[int, str], ...]]

# A group id is opaque to the relay (MLS allows any bytes); bound it all the same.
MAX_GROUP_ID_BYTES = 256


def _group_id(body: Mapping[str, Any]) -> bytes:
    group_id = b64d(body.get("group_id"), "group_id", max_bytes=MAX_GROUP_ID_BYTES)
    if not group_id:
        raise DecodeError("empty group id", field="group_id")
    return group_id


def acked_key(mailbox: str) -> str:
    """The notifier key woken when messages of ``mailbox`` are acknowledged (readers
    that push a window of it; a mailbox's own key wakes only for new messages)."""
    return f"acked:{mailbox}"


def group_key(group_id: bytes) -> str:
    """The notifier key of a group's log."""
    return "group:" + b64e(group_id)
