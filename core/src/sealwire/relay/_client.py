"""The relay's client: an agent's view of its home relay (and of any relay it sends to).

Authentication is lazy: the first call fetches a challenge, signs it with the
agent's identity key and keeps the bearer token; a call answered "unauthenticated"
(token expired, relay restarted) authenticates again once and is retried.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
from collections.abc import AsyncGenerator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from sealwire.errors import DecodeError, LocalProtocolError, SealwireError
from sealwire.identity import Identity, PublicIdentity
from sealwire.relay.errors import RelayAuthError, RelayUnavailable, error_from_wire
from sealwire.relay.wire import (
    CLIENT_NONCE_BYTES,
    Delivery,
    FetchedPrekeys,
    GroupLogEntry,
    auth_payload,
    b64d,
    b64e,
    decode_body,
    delivery_from_json,
    entry_from_json,
    get_str,
    mailbox_address,
    relay_proof_payload,
)

__all__ = ["RelayClient"]

DEFAULT_TIMEOUT_SECONDS = 10.0
# Reconnect delays of subscribe(): doubling from the first up to the last.
RECONNECT_FIRST_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 2.0
# A pushed WebSocket message larger than this is not the relay protocol.
MAX_WS_MESSAGE_BYTES = 16 * 1024 * 1024


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # One context for every client: building one loads the CA store (~30 ms).
    return ssl.create_default_context()


class RelayClient:
    """Talks to the relay at ``url`` as ``identity`` (its signed ``card`` if given)."""

    def __init__(
        self,
        url: str,
        identity: Identity,
        card: Mapping[str, Any] | None = None,
        *,
        relay_id: str | None = None,
    ) -> None:
        """``relay_id``, if given, is the relay's expected id: the relay must prove it."""
        self.url = url.rstrip("/")
        self._relay_id = relay_id
        self._identity = identity
        self._card = dict(card) if card is not None else None
        self._http = httpx.AsyncClient(timeout=DEFAULT_TIMEOUT_SECONDS, verify=_tls_context())
        self._token: str | None = None
        self._auth_lock = asyncio.Lock()

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
        await self._http.aclose()

    # -- plumbing -------------------------------------------------------------------

    async def _post(self, path: str, body: Mapping[str, Any], token: str | None) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        try:
            resp = await self._http.post(self.url + path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise RelayUnavailable(f"relay {self.url} unreachable: {type(exc).__name__}") from None
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
                self._check_relay(challenge, relay_id, relay_proof_payload(client_nonce, nonce))
            body: dict[str, Any] = {
                "challenge": b64e(nonce),
                "signature": b64e(self._identity.sign(auth_payload(relay_id, nonce))),
            }
            if self._card is not None:
                body["card"] = self._card
            else:
                body["identity"] = self._identity.public.to_json()
            self._token = get_str(await self._post("/v1/auth/session", body, None), "token")
            return self._token

    def _check_relay(self, answer: Mapping[str, Any], relay_id: str, payload: bytes) -> None:
        try:
            public = PublicIdentity.from_json(answer.get("identity"))
            public.verify(b64d(answer.get("relay_signature"), "relay_signature"), payload)
        except SealwireError:
            raise RelayAuthError("the relay did not prove its identity") from None
        if public.agent_id != self._relay_id or relay_id != self._relay_id:
            raise RelayAuthError("the relay is not the expected one")

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
        body = {"recipient": recipient, "message_id": message_id, "envelope": b64e(envelope)}
        await self._call("/v1/mailbox/send", body)

    async def fetch(self, *, limit: int = 100) -> list[Delivery]:
        """The oldest unacknowledged messages of this agent's mailbox (again until acked)."""
        answer = await self._call("/v1/mailbox/fetch", {"limit": limit})
        items = answer.get("messages")
        if not isinstance(items, list):
            raise DecodeError("expected a list", field="messages")
        return [delivery_from_json(item) for item in items]

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Remove delivered messages from the mailbox; unknown ones are ignored."""
        if deliveries:
            acks = [{"sender": d.sender, "message_id": d.message_id} for d in deliveries]
            await self._call("/v1/mailbox/ack", {"acks": acks})

    def subscribe(self) -> AsyncGenerator[Delivery, None]:
        """Deliveries pushed over a WebSocket; reconnects, and then redelivers the unacked."""
        return self._stream("/v1/mailbox/ws", delivery_from_json, lambda d: None)

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

        An unreachable relay is retried with backoff; a refusal (4xxx close code
        other than "unauthenticated") or a malformed push ends the stream with
        its error.
        """
        delay = RECONNECT_FIRST_SECONDS
        stale: str | None = None
        while True:
            try:
                token = await self._authenticate(stale) if stale or not self._token else self._token
                stale = None
                url = "ws" + self.url.removeprefix("http") + (path() if callable(path) else path)
                async with websockets.connect(
                    url,
                    additional_headers={"authorization": f"Bearer {token}"},
                    max_size=MAX_WS_MESSAGE_BYTES,
                    open_timeout=DEFAULT_TIMEOUT_SECONDS,
                ) as ws:
                    delay = RECONNECT_FIRST_SECONDS
                    async for raw in ws:
                        item = parse(decode_body(raw if isinstance(raw, bytes) else raw.encode()))
                        seen(item)
                        yield item
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                if code == 4000 + RelayAuthError.status:
                    stale = token
                    continue
                if code is not None and 4000 <= code < 4500 and exc.rcvd is not None:
                    raise _close_error(code, exc.rcvd.reason) from None
            except (RelayUnavailable, OSError, InvalidStatus, WebSocketException, TimeoutError):
                pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)


def _close_error(code: int, reason: str) -> SealwireError:
    status = code - 4000
    return error_from_wire(status, {"error": {"code": reason, "message": f"WebSocket {reason}"}})
