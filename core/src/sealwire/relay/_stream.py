"""The client's end of the relay stream (``WS /v1/stream``, see the relay's ``_stream``).

One WebSocket per client and relay carries its sends, its acknowledgements and
the deliveries of its mailbox, batched both ways:

* a send queues one item and waits for its result; a writer task puts every
  item queued meanwhile into one frame (at most ``STREAM_MAX_BATCH``), so
  concurrent sends are pipelined and share frames and relay commits. A result
  "ok" means the relay committed the message.
* an acknowledgement is queued and returns at once; acks are coalesced into
  frames (held up to ``ACK_LINGER_SECONDS``, or until ``ACK_FRAME_ITEMS`` are
  queued: they are off every caller's path, and each frame and each relay commit
  then carries several), kept until the relay confirms them and sent again after
  a reconnect (an ack is idempotent). :meth:`MailboxStream.flush` sends them at
  once and waits for them.
* deliveries are pushed once subscribed, at most a window ahead of the acks;
  after a reconnect (or a new subscription) the unacknowledged come again.

A keeper task (re)connects with backoff for as long as the stream is open. A
send made while it is not connected, or whose connection drops before its
result, raises :class:`StreamUnusable` and the caller sends over HTTP
(sending is idempotent by message id).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from sealwire.errors import DecodeError, SealwireError
from sealwire.relay.errors import RelayAuthError, RelayUnavailable, error_from_wire
from sealwire.relay.wire import (
    STREAM_FRAME_TARGET_BYTES,
    STREAM_MAX_BATCH,
    STREAM_MAX_FRAME_BYTES,
    Delivery,
    decode_body,
    get_agent_id,
    get_str,
    read_stream_frame,
    stream_frame,
)

__all__ = ["MailboxStream", "StreamUnsupported", "StreamUnusable"]

log = logging.getLogger("sealwire.relay")

# Reconnect delays of the keeper: doubling from the first up to the last.
RECONNECT_FIRST_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 2.0
# The relay's first frame ("ready") must come within this after connecting.
READY_TIMEOUT_SECONDS = 10.0
# Sends queued or waiting for their result; more wait for room (the caller's
# own concurrency is bounded by this, not by memory).
MAX_PENDING_SENDS = 4096
# Acks are held at most this long before they are sent, so that those of the
# deliveries handled meanwhile share their frame (and the relay's commit) ...
ACK_LINGER_SECONDS = 0.005
# ... or until this many are queued: far below the relay's delivery window
# (STREAM_WINDOW, 1024 deliveries), which a lingering ack must never fill.
ACK_FRAME_ITEMS = 64
# Deliveries received and not yet taken by the subscriber; beyond it the reader
# stops reading (the relay's window keeps it below).
MAX_QUEUED_DELIVERIES = 2048
# A frame's framing around its items (room kept under STREAM_MAX_FRAME_BYTES).
FRAME_OVERHEAD_BYTES = 1024
# Close codes (4000 + HTTP status) after which connecting again would not help
# but the older push WebSocket might: the relay has no stream route.
UNSUPPORTED_CODES = frozenset({4404})
AUTH_CODE = 4000 + RelayAuthError.status
# A refusal for a limit (too many connections) is retried with backoff.
RETRY_CODES = frozenset({4429, 4503})

Opener = Callable[[str | None], Awaitable[tuple[ClientConnection, str]]]


class StreamUnusable(Exception):
    """The stream cannot carry this request now: send it over HTTP instead."""


class StreamUnsupported(Exception):
    """The relay has no stream (an older relay, or a proxy refusing WebSockets)."""


class MailboxStream:
    """Sends, acks and deliveries over one WebSocket; ``opener(stale_token)``
    authenticates (again, when given the token refused) and connects."""

    def __init__(self, opener: Opener) -> None:
        self._opener = opener
        self._ids = itertools.count(1)
        self._keeper: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self._ready = asyncio.Event()
        self._kick = asyncio.Event()
        self._room = asyncio.Semaphore(MAX_PENDING_SENDS)
        self._outbox: collections.deque[tuple[int, str, bytes]] = collections.deque()
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._acks: dict[tuple[str, str], None] = {}  # not sent on this connection
        self._acks_sent: dict[int, list[tuple[str, str]]] = {}
        self._acks_done = asyncio.Event()
        self._acks_due = False  # the queued acks go with the writer's next frame
        self._ack_timer: asyncio.TimerHandle | None = None
        self._subscribed = False
        # Each subscription's number, and the one the relay was last told of (None:
        # none). A subscription closed and another opened before the writer ran must
        # still reach the relay as "unsub" then "sub", so that it pushes again what the
        # closed one dropped.
        self._subscription = 0
        self._sub_sent: int | None = None
        self._deliveries: asyncio.Queue[Delivery | BaseException] = asyncio.Queue(
            MAX_QUEUED_DELIVERIES
        )
        self.unsupported = False
        self.failure: SealwireError | None = None

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    def start(self) -> None:
        """Start connecting (and keep reconnecting) in the background; idempotent."""
        if self._keeper is None:
            self._keeper = asyncio.create_task(self._keep(), name="sealwire-relay-stream")

    async def wait_connected(self, timeout: float) -> bool:
        """Whether the stream is connected within ``timeout`` seconds (False at once
        when the relay refused it for good or has none)."""
        if self._keeper is None or self._keeper.done():
            return self.connected
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait(
                {ready, self._keeper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
            await asyncio.gather(ready, return_exceptions=True)
        return self.connected

    async def close(self) -> None:
        self._cancel_ack_timer()
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
            self._keeper = None
        self._lost()

    # -- sending -----------------------------------------------------------------

    async def send(self, recipient: str, message_id: str, envelope: bytes) -> bool:
        """Whether the relay already had it (a duplicate); the relay's typed error
        if refused; StreamUnusable when the caller should use HTTP."""
        if not self.connected:
            raise StreamUnusable("stream not connected")
        rid = next(self._ids)
        text = _send_item(rid, recipient, message_id)
        if len(text) + len(envelope) > STREAM_MAX_FRAME_BYTES - FRAME_OVERHEAD_BYTES:
            raise StreamUnusable("message too large for a stream frame")
        async with self._room:
            if not self.connected:
                raise StreamUnusable("stream not connected")
            answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._waiting[rid] = answer
            self._outbox.append((rid, text, envelope))
            self._kick.set()
            try:
                result = await answer
            finally:
                self._waiting.pop(rid, None)
        if "error" in result:
            status = result.get("status")
            raise error_from_wire(status if isinstance(status, int) else 0, result)
        return result.get("duplicate") is True

    def ack(self, keys: Sequence[tuple[str, str]]) -> None:
        """Queue acknowledgements (sent coalesced, again after a reconnect until confirmed)."""
        for key in keys:
            self._acks[key] = None
        self._acks_done.clear()
        if len(self._acks) >= ACK_FRAME_ITEMS:
            self._send_acks()
        elif self._ack_timer is None and self._acks:
            loop = asyncio.get_running_loop()
            self._ack_timer = loop.call_later(ACK_LINGER_SECONDS, self._send_acks)

    def _send_acks(self) -> None:
        """Have the writer send the queued acks now."""
        self._cancel_ack_timer()
        self._acks_due = True
        self._kick.set()

    def _cancel_ack_timer(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None

    async def flush(self, timeout: float) -> list[tuple[str, str]]:
        """Send the queued acks and wait up to ``timeout`` for the relay to confirm them
        all; the keys still unconfirmed then (taken out of the stream: the caller acks
        them)."""
        self._send_acks()
        if self._acks or self._acks_sent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acks_done.wait(), timeout)
        left = list(self._acks) + [k for keys in self._acks_sent.values() for k in keys]
        self._acks.clear()
        self._acks_sent.clear()
        return left

    # -- the subscription -------------------------------------------------------------

    async def deliveries(self) -> AsyncGenerator[Delivery, None]:
        """The mailbox's deliveries; raises StreamUnsupported (use the push WebSocket) or
        the relay's refusal. One subscription at a time."""
        if self._subscribed:
            raise StreamUnsupported("already subscribed on this stream")
        if self.unsupported:
            raise StreamUnsupported("the relay has no stream")
        if self.failure is not None:
            raise self.failure
        self._subscribed = True
        self._subscription += 1
        self._kick.set()
        try:
            while True:
                item = await self._deliveries.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._subscribed = False
            self._drop_deliveries()
            self._kick.set()

    def _drop_deliveries(self) -> None:
        while not self._deliveries.empty():
            self._deliveries.get_nowait()

    def _tell_subscriber(self, exc: BaseException) -> None:
        if self._subscribed:
            self._drop_deliveries()
            self._deliveries.put_nowait(exc)

    # -- the connection -----------------------------------------------------------------

    async def _keep(self) -> None:
        delay = RECONNECT_FIRST_SECONDS
        stale: str | None = None
        while True:
            token: str | None = None
            try:
                ws, token = await self._opener(stale)
                stale = None
                async with ws:
                    raw = await asyncio.wait_for(ws.recv(), READY_TIMEOUT_SECONDS)
                    first = decode_body(_bytes(raw))
                    if first.get("t") != "ready":
                        raise DecodeError("expected the ready frame", field="t")
                    delay = RECONNECT_FIRST_SECONDS
                    await self._serve(ws)
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                if code == AUTH_CODE and token is not None:
                    stale = token
                    self._lost()
                    continue
                if code in UNSUPPORTED_CODES:
                    self._give_up(None)
                    return
                if code is not None and 4000 <= code < 4500 and code not in RETRY_CODES:
                    reason = exc.rcvd.reason if exc.rcvd is not None else ""
                    self._give_up(error_from_wire(code - 4000, _close_body(reason)))
                    return
            except InvalidStatus:  # not a WebSocket endpoint at all (a proxy, an old server)
                self._give_up(None)
                return
            except (SealwireError, OSError, WebSocketException, TimeoutError) as exc:
                if isinstance(exc, SealwireError) and not isinstance(exc, RelayUnavailable):
                    log.warning("relay stream: %s", exc)
            self._lost()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    def _give_up(self, failure: SealwireError | None) -> None:
        self._lost()
        if failure is None:
            self.unsupported = True
            self._tell_subscriber(StreamUnsupported("the relay has no stream"))
        else:
            self.failure = failure
            self._tell_subscriber(failure)

    def _lost(self) -> None:
        """The connection is gone: sends waiting for a result go over HTTP, sent acks
        are sent again, the subscription starts again on the next connection."""
        self._ready.clear()
        self._ws = None
        self._sub_sent = None
        self._outbox.clear()
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(StreamUnusable("stream connection lost"))
        self._waiting.clear()
        for keys in self._acks_sent.values():
            for key in keys:
                self._acks[key] = None
        self._acks_sent.clear()
        self._drop_deliveries()

    async def _serve(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ready.set()
        self._acks_due = True  # those of the lost connection, again
        self._kick.set()
        writer = asyncio.create_task(self._write(ws))
        reader = asyncio.create_task(self._read(ws))
        try:
            done, _ = await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the reason it ended
        finally:
            self._ready.clear()
            for task in (writer, reader):
                task.cancel()
            await asyncio.gather(writer, reader, return_exceptions=True)

    async def _write(self, ws: ClientConnection) -> None:
        budget = STREAM_FRAME_TARGET_BYTES
        while True:
            await self._kick.wait()
            self._kick.clear()
            # Acks first: a subscription sent after them starts from what they left.
            subscribing = (self._subscription if self._subscribed else None) != self._sub_sent
            due, self._acks_due = self._acks_due or subscribing, False
            while self._acks and due:
                keys = list(itertools.islice(self._acks, STREAM_MAX_BATCH))
                for key in keys:
                    del self._acks[key]
                ack_id = next(self._ids)
                self._acks_sent[ack_id] = keys
                frame = {"t": "ack", "id": ack_id, "acks": [list(k) for k in keys]}
                await ws.send(json.dumps(frame, separators=(",", ":")))
            while self._outbox:
                parts: list[str] = []
                blobs: list[bytes] = []
                size = 0
                while self._outbox and len(parts) < STREAM_MAX_BATCH:
                    _, text, envelope = self._outbox[0]
                    if parts and size + len(text) + len(envelope) > budget:
                        break
                    self._outbox.popleft()
                    parts.append(text)
                    blobs.append(envelope)
                    size += len(text) + len(envelope) + 1
                await ws.send(stream_frame('{"t":"send","items":[' + ",".join(parts) + "]", blobs))
            wanted = self._subscription if self._subscribed else None
            if wanted != self._sub_sent:
                told, self._sub_sent = self._sub_sent, wanted
                if told is not None:
                    await ws.send('{"t":"unsub"}')
                if wanted is not None:
                    await ws.send('{"t":"sub"}')

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            if isinstance(raw, bytes):  # binary: deliveries with their envelopes as bytes
                header, blobs = read_stream_frame(raw)
                items = _items(header)
                if header.get("t") != "deliver" or len(items) != len(blobs):
                    raise DecodeError("expected deliveries and their envelopes", field="t")
                for item, blob in zip(items, blobs, strict=True):
                    delivery = _delivery(item, blob)
                    if self._subscribed and self._sub_sent == self._subscription:
                        await self._deliveries.put(delivery)
                continue
            frame = decode_body(raw.encode())
            kind = frame.get("t")
            if kind == "result":
                for item in _items(frame):
                    answer = self._waiting.get(item.get("id"))  # type: ignore[arg-type]
                    if answer is not None and not answer.done():
                        answer.set_result(item)
            elif kind == "acked":
                self._acks_sent.pop(frame.get("id"), None)  # type: ignore[arg-type]
                error = frame.get("error")
                if isinstance(error, dict) and error.get("code") != "not_found":
                    # Not committed (a storage failure): the messages stay pending,
                    # come again, and are acknowledged again then.
                    log.info("relay stream: acks not committed: %s", error.get("code"))
                if not self._acks and not self._acks_sent:
                    self._acks_done.set()
            elif kind == "error":
                error = frame.get("error")
                code = error.get("code") if isinstance(error, dict) else None
                log.warning("relay stream: a frame was refused: %s", code)


def _send_item(rid: int, recipient: str, message_id: str) -> str:
    """A send's item in a ``send`` header, as ``json.dumps`` of its fields would write
    it, five times faster (one per message sent)."""
    to, mid = _json_string(recipient), _json_string(message_id)
    return f'{{"id":{rid},"recipient":{to},"message_id":{mid}}}'


def _bytes(raw: str | bytes) -> bytes:
    return raw if isinstance(raw, bytes) else raw.encode()


def _delivery(item: dict[str, Any], envelope: bytes) -> Delivery:
    at = item.get("received_at")
    if not isinstance(at, (int, float)):
        raise DecodeError("expected a number", field="received_at")
    return Delivery(
        message_id=get_str(item, "message_id"),
        sender=get_agent_id(item, "sender"),
        envelope=envelope,
        received_at=float(at),
    )


def _items(frame: dict[str, Any]) -> list[dict[str, Any]]:
    items = frame.get("items")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise DecodeError("expected a list of objects", field="items")
    return items


def _close_body(reason: str) -> dict[str, Any]:
    return {"error": {"code": reason, "message": f"stream {reason}"}}
