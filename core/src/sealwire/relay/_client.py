"""The relay's client: an agent's view of its home relay (and of any relay it sends to).

Every call of the relay's HTTP API, each checking the shape of its answer, made
through the agent's authenticated session (:mod:`sealwire.relay._session`); the
stream that carries sends and acks (:mod:`sealwire.relay._stream`) and the push
WebSockets (:mod:`sealwire.relay._websocket`); the clients of other relays.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import OrderedDict
from collections.abc import AsyncGenerator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from sealwire.errors import DecodeError, LocalProtocolError
from sealwire.identity import Identity
from sealwire.relay._descriptor import RelayDescriptor, fetch_descriptor, verify_descriptor
from sealwire.relay._session import RelaySession
from sealwire.relay._stream import MailboxStream, StreamUnsupported, StreamUnusable
from sealwire.relay._transport import DEFAULT_TIMEOUT_SECONDS, check_base_url, tls_context
from sealwire.relay._websocket import follow, open_websocket
from sealwire.relay.errors import RelayError
from sealwire.relay.port import RelayDirectory
from sealwire.relay.wire import (
    STREAM_PATH,
    Delivery,
    FetchedPrekeys,
    GroupLogEntry,
    b64d,
    b64e,
    delivery_from_json,
    entry_from_json,
    get_str,
    mailbox_address,
)

__all__ = ["RelayClient", "RelayDescriptor", "fetch_descriptor", "verify_descriptor"]

# Acks queued on the stream are waited for this long before a fetch (so it does
# not return what was just acknowledged) or a close; the rest go over HTTP.
STREAM_FLUSH_SECONDS = 5.0
# Sends that fall back from a dropped stream to HTTP go this many at a time:
# thousands of pipelined sends at once would queue in httpx's connection pool,
# whose bookkeeping is quadratic in the queue (a minute of CPU for 2,000).
HTTP_FALLBACK_PARALLEL = 16
# The relay takes at most 1,000 acks per HTTP request (MAX_ACK_IDS).
HTTP_ACK_BATCH = 1_000
# Other relays whose directories one client keeps a session with (see ``at``):
# an agent's peers are homed on a handful of relays; one dropped beyond this
# only costs an authentication when it is asked again.
MAX_DIRECTORY_RELAYS = 64


class RelayClient:
    """Talks to the relay at ``url`` as ``identity`` (its signed ``card`` if given)."""

    def __init__(
        self,
        url: str,
        identity: Identity,
        card: Mapping[str, Any] | None = None,
        *,
        relay_id: str | None = None,
        http: httpx.AsyncClient | None = None,
        ca: str | os.PathLike[str] | None = None,
    ) -> None:
        """``relay_id``, if given, is the relay's expected id: the relay must prove it.
        ``http``, if given, is an HTTP client shared with others: :meth:`close` leaves it open.
        ``ca``, if given, is the PEM file (CA certificates, or the relay's pinned
        certificate) that an ``https://`` relay's certificate must chain to, instead
        of the system store; it applies to the WebSocket subscriptions too, not to
        other relays (:meth:`at`), which are checked against the system store."""
        self.url = url.rstrip("/")
        self._tls = tls_context(os.fspath(ca) if ca is not None else None)
        # Other relays' directories (``at``) trust the system store: with ``ca`` they
        # get an HTTP client of their own, made when first needed, closed with this one.
        self._pinned = ca is not None
        self._others_http: httpx.AsyncClient | None = None
        self._identity = identity
        self._card = dict(card) if card is not None else None
        self._owns_http = http is None
        self._session = RelaySession(
            self.url,
            identity,
            self._card,
            relay_id=relay_id,
            http=(
                http
                if http is not None
                else httpx.AsyncClient(timeout=DEFAULT_TIMEOUT_SECONDS, verify=self._tls)
            ),
        )
        self._directories: OrderedDict[str, RelayClient] = OrderedDict()
        self._signed_in: dict[str, RelayClient] = {}  # by URL: see signed_in_at
        self._mailbox_stream: MailboxStream | None = None
        self._fallback = asyncio.Semaphore(HTTP_FALLBACK_PARALLEL)

    def __repr__(self) -> str:
        return f"RelayClient(url={self.url!r}, agent_id={self._identity.agent_id!r})"

    @property
    def agent_id(self) -> str:
        return self._identity.agent_id

    @property
    def mailbox_address(self) -> str:
        """This agent's mailbox address on this relay (what its card names)."""
        return mailbox_address(self.url, self._identity.agent_id)

    async def __aenter__(self) -> RelayClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the stream (its unconfirmed acks go over HTTP if the relay is there), then
        the HTTP client (unless shared), and with it every directory :meth:`at` made."""
        stream, self._mailbox_stream = self._mailbox_stream, None
        if stream is not None:
            left = await stream.flush(STREAM_FLUSH_SECONDS if stream.connected else 0.0)
            await stream.close()
            if left:
                with contextlib.suppress(RelayError):  # then they come again: acked again
                    await self._ack_http(left)
        self._directories.clear()
        signed_in, self._signed_in = self._signed_in, {}
        for client in signed_in.values():
            await client.close()
        others, self._others_http = self._others_http, None
        if others is not None:
            await others.aclose()
        if self._owns_http:
            await self._session.http.aclose()

    # -- other relays' directories ------------------------------------------------------

    def at(self, url: str) -> RelayDirectory:
        """The directories of the relay at ``url`` (a peer's home relay); see :class:`RelayPort`.

        This client itself for its own URL. Another relay is asked through a
        client kept per URL (at most :data:`MAX_DIRECTORY_RELAYS`, the least
        recently used dropped) that shares this client's HTTP connections and
        is closed with it.

        That client authenticates under a *lookup identity* of its own, made for
        it: lookups need no rights (any authenticated agent may fetch cards,
        prekeys and KeyPackages), so a relay named by a peer's card learns
        nothing of who asks.
        """
        base = url.rstrip("/")
        if base == self.url:
            return self
        check_base_url(base)
        client = self._directories.pop(base, None)
        if client is None:
            client = RelayClient(base, Identity.generate(), http=self._directory_http())
        self._directories[base] = client
        while len(self._directories) > MAX_DIRECTORY_RELAYS:
            self._directories.popitem(last=False)  # shares our HTTP client: nothing to close
        return client

    def signed_in_at(self, url: str) -> RelayClient:
        """This agent at the relay at ``url`` (a group's relay); see :class:`RelayPort`.

        This client itself for its own URL; else a client of that relay under
        this agent's identity and card, kept per URL (one per relay this
        agent's groups live on), sharing the HTTP connections of :meth:`at`,
        closed with this one.
        """
        base = url.rstrip("/")
        if base == self.url:
            return self
        client = self._signed_in.get(base)
        if client is None:
            check_base_url(base)
            client = RelayClient(base, self._identity, self._card, http=self._directory_http())
            self._signed_in[base] = client
        return client

    # -- the stream -------------------------------------------------------------------

    async def open_stream(self, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> bool:
        """Carry sends and acks over one WebSocket (``/v1/stream``), batched and pipelined.

        Whether it is connected within ``timeout``; it keeps reconnecting in the
        background until :meth:`close`, and meanwhile (or if the relay has no
        stream) every call goes over HTTP. :meth:`subscribe` opens it too.
        """
        return await self._stream_started().wait_connected(timeout)

    @property
    def streaming(self) -> bool:
        """Whether sends and acks go over the stream right now."""
        return self._mailbox_stream is not None and self._mailbox_stream.connected

    def _stream_started(self) -> MailboxStream:
        if self._mailbox_stream is None:
            self._mailbox_stream = MailboxStream(self._connect_stream)
        self._mailbox_stream.start()
        return self._mailbox_stream

    async def _connect_stream(self, stale: str | None) -> tuple[ClientConnection, str]:
        session = self._session
        token = await session.authenticate(stale) if stale or not session.token else session.token
        ws = await open_websocket(session, STREAM_PATH, token, self._tls)
        return ws, token

    def _directory_http(self) -> httpx.AsyncClient:
        """The HTTP client of other relays' directories: ours, unless ours trusts
        only our relay's CA (then one of their own, on the system store)."""
        if not self._pinned:
            return self._session.http
        if self._others_http is None:
            self._others_http = httpx.AsyncClient(
                timeout=DEFAULT_TIMEOUT_SECONDS, verify=tls_context()
            )
        return self._others_http

    # -- prekey directory ---------------------------------------------------------

    async def publish_prekeys(
        self, binding: str, bundle: bytes, one_time: Mapping[str, Mapping[str, bytes]]
    ) -> None:
        """Replace this agent's bundle for ``binding`` and add one-time keys to its pools."""
        pools = {p: {kid: b64e(k) for kid, k in keys.items()} for p, keys in one_time.items()}
        await self._session.call(
            "/v1/prekeys/publish", {"binding": binding, "bundle": b64e(bundle), "one_time": pools}
        )

    async def fetch_prekeys(self, agent_id: str, binding: str) -> FetchedPrekeys:
        """The peer's bundle and at most one one-time key per pool (each handed out once)."""
        answer = await self._session.call(
            "/v1/prekeys/fetch", {"agent_id": agent_id, "binding": binding}
        )
        pools = answer.get("one_time")
        if not isinstance(pools, dict):
            raise DecodeError("expected an object", field="one_time")
        one_time: dict[str, tuple[str, bytes] | None] = {}
        for pool, key in pools.items():
            if key is None:
                one_time[pool] = None
            elif isinstance(key, dict):
                one_time[pool] = (get_str(key, "id"), b64d(key.get("key"), f"one_time.{pool}"))
            else:
                raise DecodeError("expected an object or null", field=f"one_time.{pool}")
        return FetchedPrekeys(b64d(answer.get("bundle"), "bundle"), one_time)

    async def count_prekeys(self, binding: str) -> Mapping[str, int]:
        """How many one-time keys remain in each of this agent's pools for ``binding``."""
        counts = (await self._session.call("/v1/prekeys/count", {"binding": binding})).get("counts")
        if not isinstance(counts, dict) or not all(type(v) is int for v in counts.values()):
            raise DecodeError("expected an object of integers", field="counts")
        return counts

    # -- KeyPackage directory -------------------------------------------------------

    async def publish_key_package(self, key_package_id: str, key_package: bytes) -> None:
        body = {"key_package_id": key_package_id, "key_package": b64e(key_package)}
        await self._session.call("/v1/key-packages/publish", body)

    async def count_key_packages(self) -> int:
        count = (await self._session.call("/v1/key-packages/count", {})).get("count")
        if type(count) is not int:
            raise DecodeError("expected an integer", field="count")
        return count

    async def fetch_key_package(self, agent_id: str) -> bytes:
        """Take one of the agent's KeyPackages (each is handed out once); NotFoundError if none."""
        answer = await self._session.call("/v1/key-packages/fetch", {"agent_id": agent_id})
        return b64d(answer.get("key_package"), "key_package")

    # -- card directory ---------------------------------------------------------------

    async def publish_card(self, card: Mapping[str, Any]) -> None:
        """Publish this agent's signed card, replacing its previous one.

        The relay verifies the signature and that the card is this agent's
        (ForbiddenError otherwise); LimitExceeded("card_size") when its RFC 8785
        form is over the relay's ``max_card_bytes``.
        """
        await self._session.call("/v1/cards/publish", {"card": dict(card)})

    async def fetch_cards(self, agent_ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        """The published cards of ``agent_ids`` (at most ``MAX_CARDS_PER_FETCH``) by agent id.

        Agents without a card are absent. The cards are NOT verified here: the
        relay is not trusted with them, so callers run
        :func:`sealwire.identity.verify_card` (and their trust store) on each.
        """
        if isinstance(agent_ids, str):
            raise LocalProtocolError("fetch_cards takes a sequence of agent ids, not one string")
        asked = list(dict.fromkeys(agent_ids))
        if not asked:
            return {}
        cards = (await self._session.call("/v1/cards/fetch", {"agent_ids": asked})).get("cards")
        if not isinstance(cards, dict):
            raise DecodeError("expected an object", field="cards")
        wanted = set(asked)
        for agent_id, card in cards.items():
            if agent_id not in wanted:
                raise DecodeError("a card that was not asked for", field="cards")
            if not isinstance(card, dict):
                raise DecodeError("expected an object", field=f"cards.{agent_id[:60]}")
        return cards

    # -- mailboxes ------------------------------------------------------------------

    async def send(self, recipient: str, message_id: str, envelope: bytes) -> None:
        """Enqueue ``envelope`` for ``recipient`` (mailbox address or agent id).

        Idempotent by ``message_id``: sending the same id again is accepted and
        stored once, so a send may be retried after any failure.
        """
        stream = self._mailbox_stream
        if stream is not None and stream.connected:
            try:
                await stream.send(recipient, message_id, envelope)
                return
            except StreamUnusable:
                pass  # not connected, dropped before the result, or too large: HTTP
            body = {"recipient": recipient, "message_id": message_id, "envelope": b64e(envelope)}
            async with self._fallback:  # a whole pipeline of sends, one request at a time
                await self._session.call("/v1/mailbox/send", body)
            return
        body = {"recipient": recipient, "message_id": message_id, "envelope": b64e(envelope)}
        await self._session.call("/v1/mailbox/send", body)

    async def fetch(self, *, limit: int = 100) -> list[Delivery]:
        """The oldest unacknowledged messages of this agent's mailbox (again until acked)."""
        stream = self._mailbox_stream
        if stream is not None:
            left = await stream.flush(STREAM_FLUSH_SECONDS if stream.connected else 0.0)
            if left:
                await self._ack_http(left)
        answer = await self._session.call("/v1/mailbox/fetch", {"limit": limit})
        items = answer.get("messages")
        if not isinstance(items, list):
            raise DecodeError("expected a list", field="messages")
        return [delivery_from_json(item) for item in items]

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Remove delivered messages from the mailbox; unknown ones are ignored.

        Over the stream the acks are queued and sent coalesced (again after a
        reconnect until the relay confirms them): this returns at once, and
        :meth:`fetch` waits for them first. A lost ack only means the message
        comes again (at-least-once); the mailbox router drops the copy.
        """
        keys = [(d.sender, d.message_id) for d in deliveries]
        stream = self._mailbox_stream
        if stream is not None and stream.connected:
            stream.ack(keys)
        elif keys:
            await self._ack_http(keys)

    async def _ack_http(self, keys: Sequence[tuple[str, str]]) -> None:
        acks = [{"sender": s, "message_id": m} for s, m in keys]
        for i in range(0, len(acks), HTTP_ACK_BATCH):
            await self._session.call("/v1/mailbox/ack", {"acks": acks[i : i + HTTP_ACK_BATCH]})

    def subscribe(self) -> AsyncGenerator[Delivery, None]:
        """Deliveries pushed over the stream (or the push WebSocket of a relay without
        one); reconnects, and then redelivers the unacked."""
        return self._subscribe()

    async def _subscribe(self) -> AsyncGenerator[Delivery, None]:
        # aclosing: the inner subscription ends with this one, not when it is collected
        # (until then the stream would count it and refuse the next subscription).
        try:
            async with contextlib.aclosing(self._stream_started().deliveries()) as stream:
                async for delivery in stream:
                    yield delivery
        except StreamUnsupported:
            pass
        async with contextlib.aclosing(
            follow(self._session, self._tls, "/v1/mailbox/ws", delivery_from_json, lambda d: None)
        ) as pushed:
            async for delivery in pushed:
                yield delivery

    async def federation_deliver(self, items: Sequence[Mapping[str, Any]]) -> list[object]:
        """Relay to relay: hand the home relay messages accepted for its agents.

        Only a configured peer relay may call this; one result per item
        (``accepted``, ``duplicate``, ``retry`` or ``refused``).
        """
        results = (await self._session.call("/v1/federation/deliver", {"items": list(items)})).get(
            "results"
        )
        if not isinstance(results, list):
            raise DecodeError("expected a list", field="results")
        return results

    # -- groups -----------------------------------------------------------------------

    async def set_group_members(self, group_id: bytes, members: Sequence[str]) -> None:
        """Create the group's log with its first member list (this agent among them).

        After creation the list changes only with a commit (``append_commit``'s
        ``members``); repeating the creation with the same list is accepted.
        """
        body: dict[str, Any] = {"group_id": b64e(group_id), "members": list(members)}
        await self._session.call("/v1/groups/members", body)

    async def group_members(self, group_id: bytes) -> list[str]:
        answer = await self._session.call("/v1/groups/get-members", {"group_id": b64e(group_id)})
        members = answer.get("members")
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise DecodeError("expected a list of agent ids", field="members")
        return members

    async def append_commit(
        self,
        group_id: bytes,
        epoch: int,
        message: bytes,
        *,
        members: Sequence[str] | None = None,
        supersedes: int | None = None,
    ) -> int:
        """Append a commit made in ``epoch``; EpochConflictError if that epoch is taken.

        ``members`` replaces the relay's member list atomically with the commit;
        ``supersedes`` names the latest commit for ``epoch``, found invalid.
        """
        extra: dict[str, Any] = {}
        if members is not None:
            extra["members"] = list(members)
        if supersedes is not None:
            extra["supersedes"] = supersedes
        return await self._append("/v1/groups/commit", group_id, epoch, message, extra)

    async def post_group_message(
        self, group_id: bytes, epoch: int, message: bytes, *, admit: Sequence[str] = ()
    ) -> int:
        """Append an application message sent in ``epoch``; its log sequence number.

        ``admit``: agents that may read the log and append one commit until the next.
        """
        extra: dict[str, Any] = {"admit": list(admit)} if admit else {}
        return await self._append("/v1/groups/message", group_id, epoch, message, extra)

    async def _append(
        self, path: str, group_id: bytes, epoch: int, message: bytes, extra: dict[str, Any]
    ) -> int:
        body = {"group_id": b64e(group_id), "epoch": epoch, "message": b64e(message), **extra}
        seq = (await self._session.call(path, body)).get("seq")
        if type(seq) is not int:
            raise DecodeError("expected an integer", field="seq")
        return seq

    async def fetch_group_log(
        self, group_id: bytes, after: int = 0, limit: int = 100
    ) -> list[GroupLogEntry]:
        """Log entries with a sequence number above ``after``, in order."""
        body = {"group_id": b64e(group_id), "after": after, "limit": limit}
        entries = (await self._session.call("/v1/groups/log", body)).get("entries")
        if not isinstance(entries, list):
            raise DecodeError("expected a list", field="entries")
        return [entry_from_json(e) for e in entries]

    def subscribe_group(
        self, group_id: bytes, after: int = 0
    ) -> AsyncGenerator[GroupLogEntry, None]:
        """The group's log entries after ``after``, then new ones as they are appended."""
        state = {"after": after}

        def path() -> str:
            return f"/v1/groups/ws?group_id={b64e(group_id)}&after={state['after']}"

        def seen(entry: GroupLogEntry) -> None:
            state["after"] = entry.seq

        return follow(self._session, self._tls, path, entry_from_json, seen)
