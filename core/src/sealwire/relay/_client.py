"""The relay's client: an agent's view of its home relay (and of any relay it sends to).

Authentication is lazy: the first call fetches a challenge, signs it with the
agent's identity key and keeps the bearer token; a call answered "unauthenticated"
(token expired, relay restarted) authenticates again once and is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import ssl
from collections import OrderedDict
from collections.abc import AsyncGenerator, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from sealwire.errors import (
    ConfigurationError,
    DecodeError,
    LocalProtocolError,
    SealwireError,
    describe_cause,
)
from sealwire.identity import Identity, PublicIdentity
from sealwire.relay._stream import MailboxStream, StreamUnusable, _Unsupported
from sealwire.relay.errors import (
    LimitExceeded,
    RelayAuthError,
    RelayCertificateError,
    RelayError,
    RelayIdentityError,
    RelayUnavailable,
    error_from_wire,
)
from sealwire.relay.port import RelayDirectory
from sealwire.relay.wire import (
    CLIENT_NONCE_BYTES,
    STREAM_PATH,
    Delivery,
    FetchedPrekeys,
    GroupLogEntry,
    auth_payload,
    b64d,
    b64e,
    decode_body,
    delivery_from_json,
    descriptor_payload,
    entry_from_json,
    get_str,
    mailbox_address,
    relay_proof_payload,
)

__all__ = ["RelayClient", "RelayDescriptor", "fetch_descriptor", "verify_descriptor"]

DEFAULT_TIMEOUT_SECONDS = 10.0
# Reconnect delays of subscribe(): doubling from the first up to the last.
RECONNECT_FIRST_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 2.0
# A relay's retry_after is honoured up to this: a larger one (a relay's mistake, or a
# hostile relay) must not park a subscription for hours.
MAX_RETRY_AFTER_SECONDS = 60.0
# WebSocket close codes (4000 + HTTP status) that say "later", not "never": the
# relay's connection limit (429) and an unavailable relay (503).
_RETRY_CLOSE_CODES = frozenset({4000 + LimitExceeded.status, 4000 + RelayUnavailable.status})
# An Ed25519 signature is 64 bytes; room for a larger (post-quantum) one, bounded.
MAX_SIGNATURE_BYTES = 8 * 1024
# A pushed WebSocket message larger than this is not the relay protocol.
MAX_WS_MESSAGE_BYTES = 16 * 1024 * 1024
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


@functools.cache
def _tls_context(ca: str | None = None) -> ssl.SSLContext:
    """The TLS context of relay clients trusting the system store, or only ``ca``.

    ``ca`` is a PEM file of CA certificates, or the relay's own (self-signed)
    certificate, which pins it. One context per file for every client: building
    one loads the CA store (~30 ms).
    """
    if ca is None:
        return ssl.create_default_context()
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cannot load the relay CA file {ca}: {describe_cause(exc)}"
        ) from None
    # A pinned relay certificate need not be a CA's: accept a chain ending at it.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def _transport_error(url: str, exc: httpx.HTTPError) -> RelayError:
    """The typed error for a request to the relay at ``url`` that got no answer."""
    if _untrusted_certificate(exc):
        return RelayCertificateError(
            f"relay {url}: its TLS certificate is not trusted ({describe_cause(exc)};"
            " set the relay CA)"
        )
    return RelayUnavailable(f"relay {url} unreachable: {describe_cause(exc)}")


def _untrusted_certificate(exc: BaseException) -> bool:
    """Whether ``exc`` (an httpx error) comes from a refused TLS certificate."""
    seen: BaseException | None = exc
    for _ in range(8):  # httpx wraps the ssl error a few levels deep
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@attrs.frozen
class RelayDescriptor:
    """A relay's signed description of itself (``GET /v1/info``), verified.

    ``relay_id`` is the fingerprint of ``identity``, which signed the rest; pin
    it (``[agent] relay_id``) and every login asks the relay to prove it.
    """

    relay_id: str
    identity: PublicIdentity = attrs.field(repr=False)
    url: str
    version: str


def verify_descriptor(
    answer: Mapping[str, Any], *, url: str, relay_id: str | None = None
) -> RelayDescriptor:
    """The descriptor in ``answer`` if its signature holds, it names ``url`` and (when
    given) is ``relay_id``'s; else :class:`RelayIdentityError` (DecodeError if malformed)."""
    claimed = get_str(answer, "relay_id")
    public = PublicIdentity.from_json(answer.get("identity"))
    signature = b64d(answer.get("signature"), "signature", max_bytes=MAX_SIGNATURE_BYTES)
    expected = relay_id if relay_id is not None else claimed
    try:
        public.verify(signature, descriptor_payload(answer))
    except SealwireError:
        raise RelayIdentityError(
            f"the relay at {url} sent a descriptor its identity did not sign",
            expected=expected,
            claimed=claimed,
        ) from None
    if public.agent_id != claimed:
        raise RelayIdentityError(
            f"the relay at {url} claims {claimed} with the keys of {public.agent_id}",
            expected=expected,
            claimed=public.agent_id,
        )
    if relay_id is not None and claimed != relay_id:
        raise RelayIdentityError(
            f"the relay at {url} is {claimed}, not the expected {relay_id}",
            expected=relay_id,
            claimed=claimed,
        )
    named = get_str(answer, "url").rstrip("/")
    if named != url.rstrip("/"):
        raise RelayIdentityError(
            f"the relay at {url} names itself {named}: use the URL it publishes",
            expected=expected,
            claimed=claimed,
        )
    return RelayDescriptor(claimed, public, named, get_str(answer, "version"))


async def fetch_descriptor(
    url: str, *, ca: str | os.PathLike[str] | None = None, relay_id: str | None = None
) -> RelayDescriptor:
    """Fetch and verify the signed descriptor of the relay at ``url`` (see
    :func:`verify_descriptor`); ``ca`` as for :class:`RelayClient`. What
    ``sealwire init --relay`` calls to learn the relay id it pins."""
    base = url.rstrip("/")
    _check_base_url(base)
    verify = _tls_context(os.fspath(ca) if ca is not None else None)
    async with httpx.AsyncClient(timeout=DEFAULT_TIMEOUT_SECONDS, verify=verify) as http:
        try:
            resp = await http.get(base + "/v1/info")
        except httpx.HTTPError as exc:
            raise _transport_error(base, exc) from None
    try:
        answer = decode_body(resp.content)
    except DecodeError:
        raise RelayUnavailable(f"relay answered HTTP {resp.status_code}, not JSON") from None
    if resp.status_code != 200:
        raise RelayUnavailable(f"relay {base} answered HTTP {resp.status_code} for its descriptor")
    return verify_descriptor(answer, url=base, relay_id=relay_id)


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
        self._relay_id = relay_id
        self._tls = _tls_context(os.fspath(ca) if ca is not None else None)
        # Other relays' directories (``at``) trust the system store: with ``ca`` they
        # get an HTTP client of their own, made when first needed, closed with this one.
        self._pinned = ca is not None
        self._others_http: httpx.AsyncClient | None = None
        self._identity = identity
        self._card = dict(card) if card is not None else None
        self._owns_http = http is None
        self._http = (
            http
            if http is not None
            else httpx.AsyncClient(timeout=DEFAULT_TIMEOUT_SECONDS, verify=self._tls)
        )
        self._directories: OrderedDict[str, RelayClient] = OrderedDict()
        self._signed_in: dict[str, RelayClient] = {}  # by URL: see signed_in_at
        self._token: str | None = None
        self._auth_lock = asyncio.Lock()
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
            await self._http.aclose()

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
        _check_base_url(base)
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
            _check_base_url(base)
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
        token = await self._authenticate(stale) if stale or not self._token else self._token
        url = "ws" + self.url.removeprefix("http") + STREAM_PATH
        ws = await websockets.connect(
            url,
            additional_headers={"authorization": f"Bearer {token}"},
            max_size=MAX_WS_MESSAGE_BYTES,
            open_timeout=DEFAULT_TIMEOUT_SECONDS,
            compression=None,  # ciphertext does not compress
            ssl=self._tls if url.startswith("wss://") else None,
        )
        return ws, token

    def _directory_http(self) -> httpx.AsyncClient:
        """The HTTP client of other relays' directories: ours, unless ours trusts
        only our relay's CA (then one of their own, on the system store)."""
        if not self._pinned:
            return self._http
        if self._others_http is None:
            self._others_http = httpx.AsyncClient(
                timeout=DEFAULT_TIMEOUT_SECONDS, verify=_tls_context()
            )
        return self._others_http

    # -- plumbing -------------------------------------------------------------------

    async def _post(self, path: str, body: Mapping[str, Any], token: str | None) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        try:
            resp = await self._http.post(self.url + path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise _transport_error(self.url, exc) from None
        try:
            answer = decode_body(resp.content)
        except DecodeError:
            raise RelayUnavailable(f"relay answered HTTP {resp.status_code}, not JSON") from None
        if resp.status_code != 200:
            raise error_from_wire(resp.status_code, answer)
        return answer

    async def _authenticate(self, stale: str | None) -> str:
        async with self._auth_lock:
            if self._token is not None and self._token != stale:
                return self._token
            client_nonce = os.urandom(CLIENT_NONCE_BYTES)
            ask = {"client_nonce": b64e(client_nonce)} if self._relay_id else {}
            challenge = await self._post("/v1/auth/challenge", ask, None)
            relay_id = get_str(challenge, "relay_id")
            nonce = b64d(challenge.get("challenge"), "challenge", max_bytes=64)
            if self._relay_id is not None:
                self._check_relay(
                    challenge, relay_id, relay_proof_payload(client_nonce, nonce), self._relay_id
                )
            body: dict[str, Any] = {
                "challenge": b64e(nonce),
                "url": self.url,
                "signature": b64e(self._identity.sign(auth_payload(relay_id, self.url, nonce))),
            }
            if self._card is not None:
                body["card"] = self._card
            else:
                body["identity"] = self._identity.public.to_json()
            self._token = get_str(await self._post("/v1/auth/session", body, None), "token")
            return self._token

    def _check_relay(
        self, answer: Mapping[str, Any], relay_id: str, payload: bytes, expected: str
    ) -> None:
        try:
            public = PublicIdentity.from_json(answer.get("identity"))
            public.verify(b64d(answer.get("relay_signature"), "relay_signature"), payload)
        except SealwireError:
            raise RelayIdentityError(
                f"the relay at {self.url} did not prove its identity (expected {expected})",
                expected=expected,
                claimed=relay_id,
            ) from None
        if public.agent_id != expected or relay_id != expected:
            raise RelayIdentityError(
                f"the relay at {self.url} is {public.agent_id}, not the configured {expected}",
                expected=expected,
                claimed=public.agent_id,
            )

    async def _call(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        token = self._token or await self._authenticate(None)
        try:
            return await self._post(path, body, token)
        except RelayAuthError as exc:
            if exc.code != RelayAuthError.code:
                raise  # forbidden: authenticating again would not help
            return await self._post(path, body, await self._authenticate(token))

    # -- prekey directory ---------------------------------------------------------

    async def publish_prekeys(
        self, binding: str, bundle: bytes, one_time: Mapping[str, Mapping[str, bytes]]
    ) -> None:
        """Replace this agent's bundle for ``binding`` and add one-time keys to its pools."""
        pools = {p: {kid: b64e(k) for kid, k in keys.items()} for p, keys in one_time.items()}
        await self._call(
            "/v1/prekeys/publish", {"binding": binding, "bundle": b64e(bundle), "one_time": pools}
        )

    async def fetch_prekeys(self, agent_id: str, binding: str) -> FetchedPrekeys:
        """The peer's bundle and at most one one-time key per pool (each handed out once)."""
        answer = await self._call("/v1/prekeys/fetch", {"agent_id": agent_id, "binding": binding})
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
        counts = (await self._call("/v1/prekeys/count", {"binding": binding})).get("counts")
        if not isinstance(counts, dict) or not all(type(v) is int for v in counts.values()):
            raise DecodeError("expected an object of integers", field="counts")
        return counts

    # -- KeyPackage directory -------------------------------------------------------

    async def publish_key_package(self, key_package_id: str, key_package: bytes) -> None:
        body = {"key_package_id": key_package_id, "key_package": b64e(key_package)}
        await self._call("/v1/key-packages/publish", body)

    async def count_key_packages(self) -> int:
        count = (await self._call("/v1/key-packages/count", {})).get("count")
        if type(count) is not int:
            raise DecodeError("expected an integer", field="count")
        return count

    async def fetch_key_package(self, agent_id: str) -> bytes:
        """Take one of the agent's KeyPackages (each is handed out once); NotFoundError if none."""
        answer = await self._call("/v1/key-packages/fetch", {"agent_id": agent_id})
        return b64d(answer.get("key_package"), "key_package")

    # -- card directory ---------------------------------------------------------------

    async def publish_card(self, card: Mapping[str, Any]) -> None:
        """Publish this agent's signed card, replacing its previous one.

        The relay verifies the signature and that the card is this agent's
        (ForbiddenError otherwise); LimitExceeded("card_size") when its RFC 8785
        form is over the relay's ``max_card_bytes``.
        """
        await self._call("/v1/cards/publish", {"card": dict(card)})

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
        cards = (await self._call("/v1/cards/fetch", {"agent_ids": asked})).get("cards")
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
                await self._call("/v1/mailbox/send", body)
            return
        body = {"recipient": recipient, "message_id": message_id, "envelope": b64e(envelope)}
        await self._call("/v1/mailbox/send", body)

    async def fetch(self, *, limit: int = 100) -> list[Delivery]:
        """The oldest unacknowledged messages of this agent's mailbox (again until acked)."""
        stream = self._mailbox_stream
        if stream is not None:
            left = await stream.flush(STREAM_FLUSH_SECONDS if stream.connected else 0.0)
            if left:
                await self._ack_http(left)
        answer = await self._call("/v1/mailbox/fetch", {"limit": limit})
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
            await self._call("/v1/mailbox/ack", {"acks": acks[i : i + HTTP_ACK_BATCH]})

    def subscribe(self) -> AsyncGenerator[Delivery, None]:
        """Deliveries pushed over the stream (or the push WebSocket of a relay without
        one); reconnects, and then redelivers the unacked."""
        return self._subscribe()

    async def _subscribe(self) -> AsyncGenerator[Delivery, None]:
        try:
            async for delivery in self._stream_started().deliveries():
                yield delivery
        except _Unsupported:
            pass
        async for delivery in self._stream("/v1/mailbox/ws", delivery_from_json, lambda d: None):
            yield delivery

    async def federation_deliver(self, items: Sequence[Mapping[str, Any]]) -> list[object]:
        """Relay to relay: hand the home relay messages accepted for its agents.

        Only a configured peer relay may call this; one result per item
        (``accepted``, ``duplicate``, ``retry`` or ``refused``).
        """
        results = (await self._call("/v1/federation/deliver", {"items": list(items)})).get(
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
        await self._call("/v1/groups/members", body)

    async def group_members(self, group_id: bytes) -> list[str]:
        answer = await self._call("/v1/groups/get-members", {"group_id": b64e(group_id)})
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
        seq = (await self._call(path, body)).get("seq")
        if type(seq) is not int:
            raise DecodeError("expected an integer", field="seq")
        return seq

    async def fetch_group_log(
        self, group_id: bytes, after: int = 0, limit: int = 100
    ) -> list[GroupLogEntry]:
        """Log entries with a sequence number above ``after``, in order."""
        body = {"group_id": b64e(group_id), "after": after, "limit": limit}
        entries = (await self._call("/v1/groups/log", body)).get("entries")
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

        return self._stream(path, entry_from_json, seen)

    # -- WebSocket streams --------------------------------------------------------------

    async def _stream(self, path: Any, parse: Any, seen: Any) -> AsyncGenerator[Any, None]:
        """Items pushed on a WebSocket; reconnects (and authenticates again) until closed.

        An unreachable relay, and any failure to (re-)authenticate (a rate limit
        429, whose ``retry_after`` is honoured, an unavailable relay, a refused
        challenge: nothing there is proven by an authenticated session) are
        retried with backoff, as are the close codes saying "later" (4429, 45xx).
        Only a refusal on the authenticated WebSocket (any other 4xxx close code
        than "unauthenticated") or a malformed push ends the stream with its error.
        """
        delay = RECONNECT_FIRST_SECONDS
        stale: str | None = None
        while True:
            wait = delay
            try:
                try:
                    token = (
                        await self._authenticate(stale) if stale or not self._token else self._token
                    )
                except (RelayError, DecodeError) as error:
                    raise _AuthFailed(error) from None
                stale = None
                url = "ws" + self.url.removeprefix("http") + (path() if callable(path) else path)
                async with websockets.connect(
                    url,
                    additional_headers={"authorization": f"Bearer {token}"},
                    max_size=MAX_WS_MESSAGE_BYTES,
                    open_timeout=DEFAULT_TIMEOUT_SECONDS,
                    compression=None,  # ciphertext does not compress
                    ssl=self._tls if url.startswith("wss://") else None,
                ) as ws:
                    delay = RECONNECT_FIRST_SECONDS
                    async for raw in ws:
                        item = parse(decode_body(raw if isinstance(raw, bytes) else raw.encode()))
                        seen(item)
                        yield item
            except _AuthFailed as failed:
                refused = failed.error
                if isinstance(refused, LimitExceeded) and refused.retry_after is not None:
                    wait = min(max(delay, refused.retry_after), MAX_RETRY_AFTER_SECONDS)
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                if code == 4000 + RelayAuthError.status:
                    stale = token
                    continue
                if (
                    code is not None
                    and 4000 <= code < 4500
                    and code not in _RETRY_CLOSE_CODES
                    and exc.rcvd is not None
                ):
                    raise _close_error(code, exc.rcvd.reason) from None
            except (RelayUnavailable, OSError, InvalidStatus, WebSocketException, TimeoutError):
                pass
            await asyncio.sleep(wait)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)


def _check_base_url(url: str) -> None:
    """DecodeError unless ``url`` is an ``http(s)://host[:port][/path]`` base URL."""
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        ok = ok and parts.port != 0 and not parts.query and not parts.fragment
    except ValueError:  # a malformed host, or a port that is not a number in range
        ok = False
    if not ok:
        raise DecodeError("expected an http(s):// base URL", field="relay_url")


class _AuthFailed(Exception):
    """(Re-)authenticating for a stream failed with ``error``: retried, never raised."""

    def __init__(self, error: SealwireError) -> None:
        super().__init__(type(error).__name__)
        self.error = error


def _close_error(code: int, reason: str) -> SealwireError:
    status = code - 4000
    return error_from_wire(status, {"error": {"code": reason, "message": f"WebSocket {reason}"}})
