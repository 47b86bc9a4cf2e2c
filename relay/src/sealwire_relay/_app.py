"""The relay as a plain ASGI application (HTTP + WebSocket), served by uvicorn.

Every HTTP call is ``POST <path>`` with a JSON object body and a JSON object
answer; errors are ``{"error": {"code", "message", ...}}`` with the status of
:mod:`sealwire.relay.errors`. Authenticated calls carry
``Authorization: Bearer <token>`` from ``/v1/auth/session``.

============================  =====================================================
``GET /v1/info``              the relay's id, public identity and version
``/v1/auth/challenge``        a fresh challenge (unauthenticated)
``/v1/auth/session``          a signed challenge for a bearer token
``/v1/prekeys/{publish,fetch,count}``       the prekey directory
``/v1/key-packages/{publish,fetch,count}``  the KeyPackage directory (one use)
``/v1/cards/publish``         ``{"card"}``: store the caller's own signed card
``/v1/cards/fetch``           ``{"agent_ids"}`` (at most 256): ``{"cards": {id: card}}``
``/v1/mailbox/{send,fetch,ack}``            mailboxes
``/v1/groups/{members,get-members,commit,message,log}``  group logs (``members``
                              takes an optional ``epoch``: the log's current one)
``/v1/federation/deliver``    messages from a peer relay (peer relays only)
``WS /v1/mailbox/ws``         push of unacknowledged deliveries
``WS /v1/groups/ws?group_id=&after=``  push of a group's log entries
``WS /v1/stream``             sends, acks and deliveries, batched (see ``_stream``)
============================  =====================================================

Plain ASGI rather than a framework: the surface is a dozen JSON calls and two
WebSocket loops, so no dependency is needed beyond the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from sealwire import __version__
from sealwire.asgi import Receive, Scope, Send, lifespan
from sealwire.errors import DecodeError, SealwireError
from sealwire.identity import Identity
from sealwire.relay.errors import LimitExceeded, NotFoundError, error_to_wire
from sealwire.relay.wire import (
    CLIENT_NONCE_BYTES,
    b64d,
    b64e,
    decode_body,
    delivery_to_json,
    entry_to_json,
    relay_proof_payload,
)
from sealwire_relay._auth import Authenticator, Principal
from sealwire_relay._limits import RateLimiter
from sealwire_relay._service import RelayService, group_key
from sealwire_relay._stream import STREAM_PATH, StreamEndpoint

__all__ = ["RelayApp"]

log = logging.getLogger("sealwire.relay")

Handler = Callable[[Principal, Mapping[str, Any]], Awaitable[dict[str, Any]]]

# A WebSocket pushes at most this many unacknowledged deliveries ahead of the
# client's acks (flow control), and re-checks storage at least this often so a
# message stored by another relay process sharing the backend is pushed too.
WS_WINDOW = 256
WS_POLL_SECONDS = 2.0
# Request bodies carry base64 (4/3) of at most a few limits-sized blobs, plus
# whole one-time prekey pools: this caps what one request may make us buffer.
MAX_REQUEST_BYTES = 8 * 1024 * 1024


class RelayApp:
    """ASGI callable serving one :class:`RelayService` with an identity of its own."""

    def __init__(
        self,
        service: RelayService,
        identity: Identity,
        *,
        random: Callable[[int], bytes],
        peer_relays: frozenset[str] = frozenset(),
    ) -> None:
        self.service = service
        self.identity = identity
        self.auth = Authenticator(
            identity.agent_id, clock=service.clock, random=random, peer_relays=peer_relays
        )
        self.limiter = RateLimiter(service.limits.rate_per_second, service.limits.rate_burst)
        self._connections = 0
        self._stream = StreamEndpoint(self)
        s = service
        self._routes: dict[str, Handler] = {
            "/v1/prekeys/publish": s.publish_prekeys,
            "/v1/prekeys/fetch": s.fetch_prekeys,
            "/v1/prekeys/count": s.count_prekeys,
            "/v1/key-packages/publish": s.publish_key_package,
            "/v1/key-packages/fetch": s.fetch_key_package,
            "/v1/key-packages/count": s.count_key_packages,
            "/v1/cards/publish": s.publish_card,
            "/v1/cards/fetch": s.fetch_cards,
            "/v1/mailbox/send": s.send,
            "/v1/mailbox/fetch": s.fetch,
            "/v1/mailbox/ack": s.ack,
            "/v1/groups/members": s.set_group_members,
            "/v1/groups/get-members": s.get_group_members,
            "/v1/groups/commit": lambda who, body: s.append(who, body, "commit"),
            "/v1/groups/message": lambda who, body: s.append(who, body, "application"),
            "/v1/groups/log": s.group_log,
            "/v1/federation/deliver": s.federation_deliver,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket" and scope["path"] == STREAM_PATH:
            await self._stream(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            await lifespan(receive, send)

    # -- HTTP -----------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, answer = 200, await self._dispatch(scope, receive)
        except SealwireError as exc:
            status, answer = error_to_wire(exc)
        except Exception:  # a bug: log it, answer 500 without details
            log.exception("relay request failed")
            status, answer = 500, {"error": {"code": "internal", "message": "internal error"}}
        body = json.dumps(answer, separators=(",", ":")).encode()
        headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _dispatch(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        path, method = scope["path"], scope["method"]
        now = self.service.clock()
        if path == "/v1/info" and method == "GET":
            return self._info()
        if method != "POST":
            raise NotFoundError(f"no route {method} {path[:100]}")
        if path == "/v1/auth/challenge":
            self.limiter.check(_client_key(scope), now)
            return self._challenge(decode_body(await _read_body(receive)))
        if path == "/v1/auth/session":
            self.limiter.check(_client_key(scope), now)
            token, who = self.auth.login(decode_body(await _read_body(receive)))
            return {"token": b64e(token), "agent_id": who.agent_id}
        handler = self._routes.get(path)
        if handler is None:
            raise NotFoundError(f"no route POST {path[:100]}")
        who = self.auth.principal(_header(scope, b"authorization"))
        if not who.is_peer_relay:
            self.limiter.check(who.agent_id, now)
        return await handler(who, decode_body(await _read_body(receive)))

    def _challenge(self, body: Mapping[str, Any]) -> dict[str, Any]:
        challenge = self.auth.challenge()
        answer: dict[str, Any] = {"relay_id": self.auth.relay_id, "challenge": b64e(challenge)}
        if "client_nonce" in body:
            nonce = b64d(body["client_nonce"], "client_nonce", max_bytes=CLIENT_NONCE_BYTES)
            if len(nonce) != CLIENT_NONCE_BYTES:
                raise DecodeError(f"expected {CLIENT_NONCE_BYTES} bytes", field="client_nonce")
            proof = self.identity.sign(relay_proof_payload(nonce, challenge))
            answer.update(identity=self.identity.public.to_json(), relay_signature=b64e(proof))
        return answer

    def _info(self) -> dict[str, Any]:
        return {
            "relay_id": self.identity.agent_id,
            "identity": self.identity.public.to_json(),
            "url": self.service.public_url,
            "version": __version__,
        }

    # -- WebSocket --------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        # Accept first, then refuse with an application close code (4000 + the
        # HTTP status): a refusal before accepting reaches the client as a bare 403.
        await send({"type": "websocket.accept"})
        try:
            who = self.auth.principal(_header(scope, b"authorization"))
            if self._connections >= self.service.limits.max_connections:
                raise LimitExceeded("connections", "too many WebSocket connections")
            pusher: Awaitable[None]
            if scope["path"] == "/v1/mailbox/ws":
                pusher = self._push_mailbox(who, send)
            elif scope["path"] == "/v1/groups/ws":
                pusher = await self._group_pusher(who, scope, send)
            else:
                raise NotFoundError("no such WebSocket route")
        except SealwireError as exc:
            status, answer = error_to_wire(exc)
            code = 4000 + status if status < 1000 else 4500
            await send({"type": "websocket.close", "code": code, "reason": answer["error"]["code"]})
            return
        self._connections += 1
        try:
            await _run_until_disconnect(pusher, receive)
        finally:
            self._connections -= 1

    async def _push_mailbox(self, who: Principal, send: Send) -> None:
        service, mailbox = self.service, who.agent_id
        sent: set[tuple[str, str]] = set()
        while True:
            batch = await service.backend.fetch(mailbox, WS_WINDOW)
            sent &= {(d.sender, d.message_id) for d in batch}  # forget the acknowledged
            for d in batch:
                if (d.sender, d.message_id) not in sent:
                    sent.add((d.sender, d.message_id))
                    await send({"type": "websocket.send", "text": json.dumps(delivery_to_json(d))})
            await service.notifier.wait(mailbox, WS_POLL_SECONDS)

    async def _group_pusher(self, who: Principal, scope: Scope, send: Send) -> Awaitable[None]:
        query = parse_qs(scope.get("query_string", b"").decode("ascii", "replace"))
        group_id = b64d(query.get("group_id", [""])[0], "group_id", max_bytes=256)
        try:
            after = int(query.get("after", ["0"])[0])
        except ValueError:
            raise DecodeError("expected an integer", field="after") from None
        await self.service.require_member(who, group_id)
        return self._push_group(group_id, after, send)

    async def _push_group(self, group_id: bytes, after: int, send: Send) -> None:
        service = self.service
        while True:
            entries = await service.backend.fetch_group_log(group_id, after, WS_WINDOW)
            for e in entries:
                await send({"type": "websocket.send", "text": json.dumps(entry_to_json(e))})
                after = e.seq
            if len(entries) < WS_WINDOW:
                await service.notifier.wait(group_key(group_id), WS_POLL_SECONDS)


async def _run_until_disconnect(pusher: Awaitable[None], receive: Receive) -> None:
    """Run ``pusher`` until the client disconnects (messages from it are ignored)."""
    push = asyncio.ensure_future(pusher)

    async def watch() -> None:
        while (await receive())["type"] != "websocket.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({push, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (push, watcher):
            task.cancel()
        await asyncio.gather(push, watcher, return_exceptions=True)
    if push.done() and not push.cancelled() and push.exception() is not None:
        log.warning("relay WebSocket push ended: %r", push.exception())


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise DecodeError("client went away", field="body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise LimitExceeded("request_size", f"request body over {MAX_REQUEST_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _client_key(scope: Scope) -> str:
    client = scope.get("client")
    return "ip:" + (str(client[0]) if client else "?")
