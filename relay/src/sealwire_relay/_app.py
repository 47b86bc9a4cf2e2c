"""The relay as a plain ASGI application (HTTP + WebSocket), served by uvicorn.

Every HTTP call is ``POST <path>`` with a JSON object body and a JSON object
answer; errors are ``{"error": {"code", "message", ...}}`` with the status of
:mod:`sealwire.relay.errors`. Authenticated calls carry
``Authorization: Bearer <token>`` from ``/v1/auth/session``.

============================  =====================================================
``GET /v1/info``              the relay's descriptor: id, public identity, URL, version,
                              and ``signature`` (its identity key's, see
                              :func:`sealwire.relay.wire.descriptor_payload`)
``GET /v1/health``            200 when every background task runs, else 503 naming them
``GET /metrics``              counters and gauges in the Prometheus text format
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
import contextlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from importlib.metadata import version
from typing import Any
from urllib.parse import parse_qs

from sealwire.asgi import Receive, Scope, Send, lifespan
from sealwire.errors import DecodeError, SealwireError
from sealwire.identity import Identity
from sealwire.relay.errors import LimitExceeded, NotFoundError, RelayAuthError, error_to_wire
from sealwire.relay.wire import (
    CLIENT_NONCE_BYTES,
    b64d,
    b64e,
    decode_body,
    delivery_to_json,
    descriptor_payload,
    relay_proof_payload,
)
from sealwire_relay._auth import Authenticator, Principal
from sealwire_relay._limits import RateLimiter
from sealwire_relay._service import Poll, RelayService, acked_key, group_key, wait_any
from sealwire_relay._stream import STREAM_PATH, StreamEndpoint
from sealwire_relay._supervisor import Supervisor

__all__ = ["RelayApp"]

RELAY_VERSION = version("sealwire-relay")
"""This distribution's version, as the signed descriptor states it."""

log = logging.getLogger("sealwire.relay")
access_log = logging.getLogger("sealwire.relay.access")
"""One INFO line per HTTP request: who, what, sizes, result, duration (never a body)."""

Handler = Callable[[Principal, Mapping[str, Any]], Awaitable[dict[str, Any]]]

# A WebSocket pushes at most this many unacknowledged deliveries ahead of the
# client's acks (flow control), and re-checks storage at least this often so a
# message stored by another relay process sharing the backend is pushed too.
WS_WINDOW = 256
WS_POLL_SECONDS = 2.0
# Request bodies carry base64 (4/3) of at most a few limits-sized blobs, plus
# whole one-time prekey pools: this caps what one request may make us buffer.
MAX_REQUEST_BYTES = 8 * 1024 * 1024
# A refusal that names no wait of its own (a full pool, too many connections)
# still tells the client when trying again makes sense: a second is long enough
# not to hammer the relay, short enough for a transient limit to have cleared.
DEFAULT_RETRY_AFTER_SECONDS = 1.0
# The largest cursor or count a query string may carry: the storage's signed
# 64-bit integers (SQLite INTEGER, JetStream sequences fit in it too).
MAX_QUERY_INT = 2**63 - 1
# Prometheus text exposition format, version 0.0.4.
METRICS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class RelayApp:
    """ASGI callable serving one :class:`RelayService` with an identity of its own."""

    def __init__(
        self,
        service: RelayService,
        identity: Identity,
        *,
        random: Callable[[int], bytes],
        peer_relays: frozenset[str] = frozenset(),
        supervisor: Supervisor | None = None,
    ) -> None:
        self.service = service
        self.identity = identity
        self.metrics = service.metrics
        self.supervisor = supervisor or Supervisor(service.metrics)
        self.auth = Authenticator(
            identity.agent_id, url=service.public_url, clock=service.clock, random=random,
            peer_relays=peer_relays,
        )  # fmt: skip
        limits = service.limits
        self.limiter = RateLimiter(limits.rate_per_second, limits.rate_burst)
        # Logins are limited per client address, apart from the agents' own
        # requests: a fleet behind one NAT shares an address (see RelayLimits).
        self.login_limiter = RateLimiter(limits.login_rate_per_second, limits.login_burst)
        self._connections = 0
        self.metrics.set("sealwire_relay_websockets_open", 0)
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
            "/v1/groups/members": self._set_group_members,
            "/v1/groups/get-members": s.get_group_members,
            "/v1/groups/commit": lambda who, body: s.append(who, body, "commit"),
            "/v1/groups/message": lambda who, body: s.append(who, body, "application"),
            "/v1/groups/log": s.group_log,
            "/v1/federation/deliver": s.federation_deliver,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._logged_websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            await lifespan(receive, send)

    # -- HTTP -----------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/metrics":
            await self._metrics(send)
            return
        route = path if path in self._routes or path in _OPEN_ROUTES else "other"
        body_in = [0]
        caller: list[str] = []  # the authenticated agent (or peer relay), once known
        try:
            status, answer = 200, await self._dispatch(scope, _counting(receive, body_in), caller)
            result = "ok"
        except SealwireError as exc:
            status, answer = error_to_wire(exc)
            result = str(answer["error"]["code"])
            self._count_refusal(exc)
            if status == 429 and answer["error"].get("retry_after") is None:
                answer["error"]["retry_after"] = DEFAULT_RETRY_AFTER_SECONDS
        except Exception:  # a bug: log it, answer 500 without details
            log.exception("relay request failed")
            status, answer = 500, {"error": {"code": "internal", "message": "internal error"}}
            result = "internal"
        if path == "/v1/health" and method == "GET" and status == 200 and answer["failing"]:
            status = 503
        body = json.dumps(answer, separators=(",", ":")).encode()
        headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        if status == 429:
            wait = math.ceil(float(answer["error"]["retry_after"]))
            headers.append((b"retry-after", str(max(1, wait)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        elapsed = time.perf_counter() - started
        self.metrics.inc("sealwire_relay_requests_total", route=route, result=result)
        self.metrics.inc("sealwire_relay_request_bytes_total", body_in[0])
        self.metrics.inc("sealwire_relay_response_bytes_total", len(body))
        self.metrics.observe("sealwire_relay_request_duration_seconds", elapsed, route=route)
        if access_log.isEnabledFor(logging.INFO):
            who = caller[0] if caller else _client_address(scope)
            _log_request(who, f"{method} {route}", body_in[0], len(body), status, result, elapsed)

    def _count_refusal(self, exc: SealwireError) -> None:
        """Count a refusal by its reason: the limit's name, or the auth error's code."""
        if isinstance(exc, LimitExceeded):
            self.metrics.inc("sealwire_relay_refusals_total", reason=exc.limit)
        elif isinstance(exc, RelayAuthError):
            self.metrics.inc("sealwire_relay_refusals_total", reason=str(exc.code))

    async def _metrics(self, send: Send) -> None:
        await self.service.refresh_gauges()
        body = self.metrics.render().encode()
        headers = [(b"content-type", METRICS_CONTENT_TYPE), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _dispatch(
        self, scope: Scope, receive: Receive, caller: list[str] | None = None
    ) -> dict[str, Any]:
        """Serve one HTTP request; the authenticated caller's id is appended to ``caller``."""
        path, method = scope["path"], scope["method"]
        now = self.service.clock()
        if path == "/v1/info" and method == "GET":
            return self._info()
        if path == "/v1/health" and method == "GET":
            return self._health()
        if method != "POST":
            raise NotFoundError(f"no route {method} {path[:100]}")
        if path == "/v1/auth/challenge":
            self.login_limiter.check(_client_key(scope), now)
            return self._challenge(decode_body(await _read_body(receive)))
        if path == "/v1/auth/session":
            self.login_limiter.check(_client_key(scope), now)
            token, who = self.auth.login(decode_body(await _read_body(receive)))
            return {"token": b64e(token), "agent_id": who.agent_id}
        handler = self._routes.get(path)
        if handler is None:
            raise NotFoundError(f"no route POST {path[:100]}")
        who = self.auth.principal(_header(scope, b"authorization"))
        if caller is not None:
            caller.append(who.agent_id)
        if not who.is_peer_relay:
            self.limiter.check(who.agent_id, now)
        return await handler(who, decode_body(await _read_body(receive)))

    def _health(self) -> dict[str, Any]:
        states = self.supervisor.states()
        return {
            "status": "failing" if self.supervisor.failing() else "ok",
            "failing": self.supervisor.failing(),
            "tasks": {
                name: {"state": st.state, "restarts": st.restarts, "last_error": st.last_error}
                for name, st in sorted(states.items())
            },
        }

    async def _set_group_members(self, who: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
        """Set a member list, then wake the group's WebSockets to re-check their members."""
        answer = await self.service.set_group_members(who, body)
        self.service.notifier.notify(group_key(b64d(body.get("group_id"), "group_id")))
        return answer

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
        descriptor: dict[str, Any] = {
            "relay_id": self.identity.agent_id,
            "identity": self.identity.public.to_json(),
            "url": self.service.public_url,
            "version": RELAY_VERSION,
        }
        descriptor["signature"] = b64e(self.identity.sign(descriptor_payload(descriptor)))
        return descriptor

    # -- WebSocket --------------------------------------------------------------

    async def _logged_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a WebSocket; then one access line for the whole connection (its
        frames are batches of envelopes: counted in messages and bytes, never read)."""
        if not access_log.isEnabledFor(logging.INFO):
            await self._serve_websocket(scope, receive, send)
            return
        started = time.perf_counter()
        seen = _WebSocketTally()
        try:
            await self._serve_websocket(scope, seen.receive(receive), seen.send(send))
        finally:
            try:
                who = self.auth.principal(_header(scope, b"authorization")).agent_id
            except SealwireError:
                who = _client_address(scope)
            route = scope["path"] if scope["path"] in _WS_ROUTES else "other"
            elapsed = time.perf_counter() - started
            result = f"closed {seen.close_code}" if seen.close_code else "disconnected"
            _log_request(
                who, f"WS {route}", seen.bytes_in, seen.bytes_out, 101, result, elapsed,
                messages=(seen.messages_in, seen.messages_out),
            )  # fmt: skip

    async def _serve_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == STREAM_PATH:
            await self._stream(scope, receive, send)
        else:
            await self._websocket(scope, receive, send)

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
            self._count_refusal(exc)
            await _close_with(send, exc)
            return
        self._connections += 1
        self.metrics.set("sealwire_relay_websockets_open", self._connections)
        try:
            await _run_until_disconnect(pusher, receive, send)
        finally:
            self._connections -= 1
            self.metrics.set("sealwire_relay_websockets_open", self._connections)

    async def _push_mailbox(self, who: Principal, send: Send) -> None:
        """Push the mailbox at most WS_WINDOW deliveries ahead of the acks (made over
        HTTP): new mail is read on from the last delivery pushed, and the window is read
        back, to forget what was acknowledged, only when it is full and an ack or the
        poll came (not at every wake: that read grew with the window)."""
        service, mailbox, backend = self.service, who.agent_id, self.service.backend
        sent: dict[tuple[str, str], None] = {}  # pushed, not known to be acknowledged
        last: tuple[str, str] | None = None
        with (
            service.notifier.watching(mailbox) as mail,
            service.notifier.watching(acked_key(mailbox)) as acked,
            Poll(mail, WS_POLL_SECONDS) as poll,
        ):
            while True:
                mail.clear()
                # Acks (made here or, seen at the poll, elsewhere) matter once it is full.
                if len(sent) >= WS_WINDOW and (poll.due or acked.is_set()):
                    acked.clear()
                    pending = await backend.fetch(mailbox, WS_WINDOW)
                    keys = {(d.sender, d.message_id) for d in pending}
                    sent = {key: None for key in sent if key in keys}
                poll.due = False
                room = WS_WINDOW - len(sent)
                for d in await backend.fetch_after(mailbox, last, room) if room else ():
                    last = (d.sender, d.message_id)
                    if last not in sent:
                        sent[last] = None
                        text = json.dumps(delivery_to_json(d))
                        await send({"type": "websocket.send", "text": text})
                if len(sent) >= WS_WINDOW:  # full: an ack (or the poll) makes room
                    await wait_any([mail, acked], WS_POLL_SECONDS)
                else:
                    await mail.wait()

    async def _group_pusher(self, who: Principal, scope: Scope, send: Send) -> Awaitable[None]:
        query = parse_qs(scope.get("query_string", b"").decode("ascii", "replace"))
        group_id = b64d(query.get("group_id", [""])[0], "group_id", max_bytes=256)
        after = _query_int(query, "after", default=0)
        await self.service.require_member(who, group_id)
        return self._push_group(who, group_id, after, send)

    async def _push_group(self, who: Principal, group_id: bytes, after: int, send: Send) -> None:
        """Push the log after ``after``; ends with ForbiddenError once ``who`` is removed.

        Membership is checked again at every wake-up: a member list change wakes
        the group's sockets (see ``_set_group_members``), and each poll re-reads it
        too, which catches a change made by another relay process.
        """
        service = self.service
        with (
            service.notifier.watching(group_key(group_id)) as changed,
            Poll(changed, WS_POLL_SECONDS),
        ):
            while True:
                changed.clear()
                entries = await service.group_tail(who, group_id, after, WS_WINDOW)
                for seq, text in entries:
                    await send({"type": "websocket.send", "text": text})
                    after = seq
                if len(entries) < WS_WINDOW:
                    await changed.wait()


_WS_ROUTES = frozenset({STREAM_PATH, "/v1/mailbox/ws", "/v1/groups/ws"})
_OPEN_ROUTES = frozenset({"/v1/info", "/v1/health", "/v1/auth/challenge", "/v1/auth/session"})


def _query_int(query: Mapping[str, list[str]], name: str, *, default: int) -> int:
    """An integer of a query string, in 0..MAX_QUERY_INT, else DecodeError."""
    values = query.get(name)
    if not values:
        return default
    raw = values[0]
    # Checked before int(): a string of digits is bounded before it is parsed.
    if not raw.isascii() or not raw.isdigit() or len(raw) > len(str(MAX_QUERY_INT)):
        raise DecodeError(f"expected an integer in [0, {MAX_QUERY_INT}]", field=name)
    value = int(raw)
    if value > MAX_QUERY_INT:
        raise DecodeError(f"expected an integer in [0, {MAX_QUERY_INT}]", field=name)
    return value


async def _close_with(send: Send, exc: SealwireError) -> None:
    """Close a WebSocket with the application code of ``exc`` (4000 + its HTTP status)."""
    status, answer = error_to_wire(exc)
    code = 4000 + status if status < 1000 else 4500
    await send({"type": "websocket.close", "code": code, "reason": answer["error"]["code"]})


async def _run_until_disconnect(pusher: Awaitable[None], receive: Receive, send: Send) -> None:
    """Run ``pusher`` until the client disconnects (messages from it are ignored).

    A pusher that ends with a relay error (the member was removed, a bad
    cursor) closes the socket with that error's code.
    """
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
    failure = push.exception() if push.done() and not push.cancelled() else None
    if isinstance(failure, SealwireError):
        with contextlib.suppress(Exception):  # the client may be gone already
            await _close_with(send, failure)
    elif failure is not None:
        log.warning("relay WebSocket push ended: %r", failure)


def _counting(receive: Receive, total: list[int]) -> Receive:
    """``receive`` that adds the body bytes it passes on to ``total[0]``."""

    async def counted() -> MutableMapping[str, Any]:
        message = await receive()
        total[0] += len(message.get("body", b""))
        return message

    return counted


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


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "?"


def _client_key(scope: Scope) -> str:
    return "ip:" + _client_address(scope)


class _WebSocketTally:
    """Counts of a WebSocket's messages and bytes each way, and its close code."""

    def __init__(self) -> None:
        self.messages_in = self.messages_out = self.bytes_in = self.bytes_out = 0
        self.close_code: int | None = None

    def receive(self, receive: Receive) -> Receive:
        async def counted() -> MutableMapping[str, Any]:
            message = await receive()
            if message["type"] == "websocket.receive":
                self.messages_in += 1
                self.bytes_in += len(message.get("bytes") or b"") + len(message.get("text") or "")
            return message

        return counted

    def send(self, send: Send) -> Send:
        async def counted(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "websocket.send":
                self.messages_out += 1
                self.bytes_out += len(message.get("bytes") or b"") + len(message.get("text") or "")
            elif message["type"] == "websocket.close":
                self.close_code = int(message.get("code", 1000))
            await send(message)

        return counted


def _log_request(
    who: str,
    what: str,
    size_in: int,
    size_out: int,
    status: int,
    result: str,
    elapsed: float,
    *,
    messages: tuple[int, int] | None = None,
) -> None:
    """The access line: structured fields for JSON logs, the same facts in the text."""
    ms = round(elapsed * 1000, 3)
    counts = {} if messages is None else {"messages_in": messages[0], "messages_out": messages[1]}
    # Formatted here (the caller checked the level): a record without arguments
    # costs the handler less, and every value is the relay's own.
    access_log.info(
        f"{who} {what} {status} {result} in={size_in}B out={size_out}B {ms:.1f}ms",
        extra={
            "who": who,
            "method": what.partition(" ")[0],
            "route": what.partition(" ")[2],
            "status": status,
            "result": result,
            "bytes_in": size_in,
            "bytes_out": size_out,
            "duration_ms": ms,
            **counts,
        },
    )
