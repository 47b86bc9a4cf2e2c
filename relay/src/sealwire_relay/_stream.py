"""``WS /v1/stream``: one WebSocket per agent carrying its sends, acknowledgements and
deliveries, in batches both ways and pipelined.

Authenticated like the other WebSockets (``Authorization: Bearer``; the relay
accepts, then closes with 4000 + the HTTP status of a refusal). Every frame is
a JSON object (text) whose ``t`` names it:

client to relay
  ``{"t": "send", "items": [{"id", "recipient", "message_id", "envelope"}, ...]}``
      ``id`` is the client's request id (an integer), echoed in the result;
      the same as a binary frame (:func:`sealwire.relay.wire.stream_frame`): the
      items without ``envelope``, the envelopes as bytes after the header;
  ``{"t": "ack", "id", "acks": [[sender, message_id], ...]}``;
  ``{"t": "sub"}`` / ``{"t": "unsub"}``: start / stop the push of the agent's
      mailbox (a new ``sub`` pushes every unacknowledged message again).
relay to client
  ``{"t": "ready", "max_batch"}``: the first frame, once the connection is authenticated;
  ``{"t": "result", "items": [{"id", "duplicate"} | {"id", "status", "error"}, ...]}``:
      one answer per send, sent only once the message is committed
      (acknowledged means durable); ``error`` is the HTTP API's error body
      (``limit_exceeded`` carries ``retry_after``);
  ``{"t": "acked", "id", "removed"}``, with ``unknown`` (the keys that named
      no pending message of this mailbox: forged, replayed, another agent's)
      and a ``not_found`` ``error`` when there are some;
  ``{"t": "deliver", "items": [{"message_id", "sender", "received_at"}, ...]}``
      as a binary frame, the envelopes as bytes after the header;
  ``{"t": "error", "error"}``: a frame refused as a whole (a bad field, a
      batch over :data:`STREAM_MAX_BATCH`); the connection keeps serving.

A frame that is not a JSON object with a known ``t`` is a framing error: the
relay closes the connection with 4400 (``bad_request``). Other connections are
never affected.

Flow control: at most :data:`STREAM_WINDOW` deliveries and
:data:`STREAM_WINDOW_BYTES` of envelopes are pushed ahead of the client's acks; at
most :data:`STREAM_INFLIGHT_FRAMES` frames of one connection wait for their commit,
after which the relay stops reading it (TCP then slows the client down, nothing is
buffered without bound); send frames take a token each from the agent's rate
limiter (the HTTP one: a frame costs what a request does) and are answered
``limit_exceeded`` with ``retry_after`` beyond it; an ack
frame beyond it waits for its token (the connection is not read meanwhile).

Commits are grouped: the :class:`MailboxCommitter` lets the event loop turn a
few times while that brings more work (:data:`GATHER_TURNS`), takes whatever
sends and acks are queued (from every connection), commits them in one backend
batch (one SQLite transaction), then answers each; a batch that fails answers
every one of its senders with the error (nothing is acknowledged).

Pushes come from memory where the backend allows (SQLite, :class:`MailboxFeed`):
once a pusher has read its mailbox to the end, each later commit hands it what
it stored, in commit order, instead of the pusher reading it back (and it takes
what its window has room for); storage is read on (re)subscription, after a
poll, when more waits than the feed may hold, and when another connection wrote
to the file.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator, Mapping
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any, Protocol

from sealwire.asgi import Receive, Scope, Send
from sealwire.errors import DecodeError, SealwireError
from sealwire.relay.errors import LimitExceeded, NotFoundError, RelayError, error_to_wire
from sealwire.relay.wire import (
    STREAM_FRAME_TARGET_BYTES,
    STREAM_MAX_BATCH,
    STREAM_MAX_FRAME_BYTES,
    STREAM_PATH,
    Delivery,
    decode_body,
    get_str,
    read_stream_frame,
    stream_frame,
)
from sealwire_relay._auth import Authenticator, Principal
from sealwire_relay._limits import RateLimiter
from sealwire_relay._metrics import Metrics
from sealwire_relay._service import MAX_ACK_IDS, Poll, RelayService, wait_any
from sealwire_relay._stream_commits import MailboxCommitter
from sealwire_relay._stream_feed import CommitFeed, MailboxFeed, PushWindow, Sink

__all__ = ["STREAM_PATH", "StreamEndpoint", "StreamHost"]

log = logging.getLogger("sealwire.relay")

# Deliveries pushed ahead of the client's acks: enough to keep a consumer busy for
# the round trip of its coalesced acks (a few milliseconds, and their commit) at tens
# of thousands of messages per second, while a client that stops acknowledging gets
# no more than this; and envelope bytes, which bound what such a client holds of the
# relay's memory in flight (16 deliveries of the largest default message, 256 KiB).
STREAM_WINDOW = 1024
STREAM_WINDOW_BYTES = 4 * 1024 * 1024
# What a commit hands a pusher may run ahead of its window (see MailboxFeed): at most
# this many envelope bytes per connection (a commit's batch of 1 KiB messages several
# times over), and in all connections together; past either, the pusher reads storage.
FEED_SINK_BYTES = 4 * 1024 * 1024
FEED_TOTAL_BYTES = 64 * 1024 * 1024
# Frames of one connection waiting for their commit; beyond it the relay stops
# reading the connection. 8 x STREAM_MAX_BATCH messages is a few commits' worth.
STREAM_INFLIGHT_FRAMES = 8
# The pusher re-reads storage at least this often: a message stored by another
# relay process sharing the backend is pushed too, and acks made elsewhere
# (HTTP, another connection) free a window no ack on the connection moved since.
STREAM_POLL_SECONDS = 2.0
# Request ids are JSON integers the client picks; this keeps them exact in any
# JSON implementation (IEEE doubles).
MAX_REQUEST_ID = 2**53 - 1
# Room left in a deliver frame for its framing around the deliveries.
FRAME_OVERHEAD_BYTES = 1024
# Close code of a framing error (4000 + 400, as a refusal at connect).
FRAMING_ERROR_CODE = 4400


class StreamHost(Protocol):
    """What the stream needs of the relay application (``RelayApp``): its service,
    authenticator, per-agent rate limiter, metrics, and WebSocket count (shared
    with the other WebSockets, under one ``max_connections``)."""

    service: RelayService
    auth: Authenticator
    limiter: RateLimiter
    metrics: Metrics
    _connections: int


class _FramingError(Exception):
    """A frame that is not the stream protocol: the connection is closed."""


class StreamEndpoint:
    """The ASGI handler of ``WS /v1/stream`` for one :class:`RelayApp`."""

    def __init__(self, app: StreamHost) -> None:
        self.app = app
        self.committer = MailboxCommitter(app.service)
        backend = app.service.backend
        self.feed: MailboxFeed | None = None
        if isinstance(backend, CommitFeed):
            self.feed = MailboxFeed(sink_bytes=FEED_SINK_BYTES, total_bytes=FEED_TOTAL_BYTES)
            backend.follow_commits(self.feed.committed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        app = self.app
        try:
            who = app.auth.principal(_header(scope, b"authorization"))
            if app._connections >= app.service.limits.max_connections:
                raise LimitExceeded("connections", "too many WebSocket connections")
        except SealwireError as exc:
            status, answer = error_to_wire(exc)
            code = 4000 + status if status < 1000 else 4500
            await send({"type": "websocket.close", "code": code, "reason": answer["error"]["code"]})
            return
        app._connections += 1
        app.metrics.set("sealwire_relay_websockets_open", app._connections)
        try:
            await _Session(self, who, send).run(receive)
        finally:
            app._connections -= 1
            app.metrics.set("sealwire_relay_websockets_open", app._connections)


def _error(exc: BaseException) -> tuple[int, dict[str, Any]]:
    if isinstance(exc, SealwireError):
        status, body = error_to_wire(exc)
        return status, body["error"]
    return 500, {"code": "internal", "message": "internal error"}


def _request_id(value: object, field: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_REQUEST_ID:
        raise DecodeError(f"expected an integer in [0, {MAX_REQUEST_ID}]", field=field)
    return value


class _Session:
    """One stream connection: reads frames, answers them, pushes the mailbox."""

    def __init__(self, endpoint: StreamEndpoint, who: Principal, send: Send) -> None:
        self.app = endpoint.app
        self.committer = endpoint.committer
        self.feed = endpoint.feed
        self.who = who
        self._send = send
        self.inflight = asyncio.Semaphore(STREAM_INFLIGHT_FRAMES)
        self.tasks: set[asyncio.Task[None]] = set()
        self.ack_tasks: set[asyncio.Task[None]] = set()
        self.pusher: asyncio.Task[None] | None = None
        # Deliveries pushed on this connection and not acknowledged, oldest first.
        self.pushed = PushWindow(STREAM_WINDOW, STREAM_WINDOW_BYTES)
        # Acks being committed, and those committed since the pusher's last read
        # began: a read that ran beside their commit may still hold them.
        self.acking: set[tuple[str, str]] = set()
        self.acked_since_read: set[tuple[str, str]] = set()
        self.last: tuple[str, str] | None = None
        self.acked = asyncio.Event()
        self.acked_since_poll = False
        # Following the mailbox's commits (see MailboxFeed), when the pusher does.
        self.sink: Sink | None = None

    async def run(self, receive: Receive) -> None:
        try:
            await self._frame({"t": "ready", "max_batch": STREAM_MAX_BATCH})
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message["type"] != "websocket.receive":
                    continue
                text = message.get("text")
                try:
                    if text is not None:
                        frame, blobs = self._parse(text.encode()), None
                    else:
                        frame, blobs = self._parse_binary(message.get("bytes") or b"")
                except _FramingError as exc:
                    reason = f"bad_request: {exc}"[:120]
                    await self._send(
                        {"type": "websocket.close", "code": FRAMING_ERROR_CODE, "reason": reason}
                    )
                    return
                try:
                    await self._handle(frame, blobs)
                except SealwireError as exc:
                    await self._frame({"t": "error", "error": _error(exc)[1]})
        except OSError as exc:  # the client went away while we wrote to it
            log.debug("relay stream closed: %r", exc)
        finally:
            await self._stop_pusher()
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    @staticmethod
    def _parse(raw: bytes) -> Mapping[str, Any]:
        if len(raw) > STREAM_MAX_FRAME_BYTES:
            raise _FramingError(f"frame over {STREAM_MAX_FRAME_BYTES} bytes")
        try:
            frame = decode_body(raw)
        except DecodeError:
            raise _FramingError("not a JSON object") from None
        if frame.get("t") not in ("send", "ack", "sub", "unsub"):
            raise _FramingError("unknown frame type")
        return frame

    @staticmethod
    def _parse_binary(raw: bytes) -> tuple[Mapping[str, Any], list[bytes]]:
        if len(raw) > STREAM_MAX_FRAME_BYTES:
            raise _FramingError(f"frame over {STREAM_MAX_FRAME_BYTES} bytes")
        try:
            frame, blobs = read_stream_frame(raw)
        except DecodeError as exc:
            raise _FramingError(str(exc)) from None
        if frame.get("t") != "send":
            raise _FramingError("only send frames are binary")
        return frame, blobs

    async def _frame(self, body: Mapping[str, Any]) -> None:
        await self._send_text(json.dumps(body, separators=(",", ":")))

    async def _send_text(self, text: str) -> None:
        await self._send({"type": "websocket.send", "text": text})

    def _spawn(self, coro: Any, group: set[asyncio.Task[None]] | None = None) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        for g in (self.tasks, group) if group is not None else (self.tasks,):
            g.add(task)
            task.add_done_callback(g.discard)

    async def _handle(self, frame: Mapping[str, Any], blobs: list[bytes] | None) -> None:
        kind = frame["t"]
        if kind == "send":
            items = frame.get("items")
            if not isinstance(items, list) or not items:
                raise DecodeError("expected a non-empty list", field="items")
            if len(items) > STREAM_MAX_BATCH:
                raise LimitExceeded("batch", f"more than {STREAM_MAX_BATCH} items in one frame")
            if blobs is not None and len(blobs) != len(items):
                raise DecodeError("one envelope per item", field="sizes")
            ids = [_request_id(i.get("id") if isinstance(i, dict) else None, "id") for i in items]
            refused: LimitExceeded | None = None
            if not self.who.is_peer_relay:
                try:
                    self.app.limiter.check(self.who.agent_id, self.app.service.clock())
                except LimitExceeded as exc:
                    refused = exc
            await self.inflight.acquire()  # backpressure: no more reading until one is done
            self._spawn(self._answer_sends(ids, items, blobs, refused))
        elif kind == "ack":
            ack_id = _request_id(frame.get("id"), "id")
            acks = frame.get("acks")
            if not isinstance(acks, list) or len(acks) > MAX_ACK_IDS:
                raise DecodeError(f"expected a list of at most {MAX_ACK_IDS} acks", field="acks")
            keys = []
            for pair in acks:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise DecodeError("expected [sender, message_id]", field="acks")
                keys.append((get_str({"s": pair[0]}, "s"), get_str({"m": pair[1]}, "m")))
            await self._pace()
            await self.inflight.acquire()
            self._spawn(self._answer_acks(ack_id, keys), self.ack_tasks)
        elif kind == "sub":
            if self.pusher is None:
                # Acks read before this frame are committed first: the push starts
                # from the mailbox as the client left it.
                await asyncio.gather(*self.ack_tasks, return_exceptions=True)
                self.pushed.clear()
                self.last = None
                self.pusher = asyncio.create_task(self._push(), name="sealwire-relay-push")
        else:
            await self._stop_pusher()

    async def _pace(self) -> None:
        """Take a token for an ack frame, waiting for one rather than refusing: a
        refused ack would only make the relay deliver the message again, so an
        agent over its rate is slowed down (this connection is not read meanwhile)."""
        if self.who.is_peer_relay:
            return
        while True:
            try:
                self.app.limiter.check(self.who.agent_id, self.app.service.clock())
                return
            except LimitExceeded as exc:
                await asyncio.sleep(exc.retry_after or STREAM_POLL_SECONDS)

    async def _stop_pusher(self) -> None:
        if self.pusher is not None:
            self.pusher.cancel()
            await asyncio.gather(self.pusher, return_exceptions=True)
            self.pusher = None

    async def _answer_sends(
        self,
        ids: list[int],
        items: list[Any],
        blobs: list[bytes] | None,
        refused: LimitExceeded | None,
    ) -> None:
        try:
            answers: dict[int, dict[str, Any]] = {}
            prepared: list[tuple[int, tuple[str, Delivery]]] = []
            for k, (rid, item) in enumerate(zip(ids, items, strict=True)):
                try:
                    if refused is not None:
                        raise refused
                    envelope = blobs[k] if blobs is not None else None
                    prepared.append((rid, self.app.service.route_send(self.who, item, envelope)))
                except SealwireError as exc:
                    status, error = _error(exc)
                    answers[rid] = {"id": rid, "status": status, "error": error}
            if prepared:
                try:
                    _, stored = await self.committer.commit([], [p for _, p in prepared])
                except Exception as exc:
                    status, error = _error(exc)
                    for rid, _ in prepared:
                        answers[rid] = {"id": rid, "status": status, "error": error}
                else:
                    for (rid, _), fresh in zip(prepared, stored, strict=True):
                        if isinstance(fresh, RelayError):
                            status, error = _error(fresh)
                            answers[rid] = {"id": rid, "status": status, "error": error}
                        else:
                            answers[rid] = {"id": rid, "duplicate": not fresh}
            await self._frame({"t": "result", "items": [answers[rid] for rid in ids]})
        except Exception as exc:  # the connection went away: the client will retry
            log.debug("relay stream result not sent: %r", exc)
        finally:
            self.inflight.release()

    async def _answer_acks(self, ack_id: int, keys: list[tuple[str, str]]) -> None:
        mailbox = self.who.agent_id
        self.acking.update(keys)
        try:
            try:
                acked, _ = await self.committer.commit([(mailbox, s, m) for s, m in keys], [])
            finally:
                self.acking.difference_update(keys)
            unknown = [key for key, done in zip(keys, acked, strict=True) if not done]
            self.acked_since_read.update(set(keys).difference(unknown))
            for key in keys:
                self.pushed.remove(key)  # the window moves on
            self.acked.set()
            self.acked_since_poll = True
            removed = len(keys) - len(unknown)
            answer: dict[str, Any] = {"t": "acked", "id": ack_id, "removed": removed}
            if unknown:
                exc = NotFoundError(
                    f"{len(unknown)} acknowledgement(s) name no pending message of this mailbox"
                )
                answer.update(unknown=[list(k) for k in unknown], error=_error(exc)[1])
            await self._frame(answer)
        except Exception as exc:
            if isinstance(exc, SealwireError):
                failed = {"t": "acked", "id": ack_id, "removed": 0, "error": _error(exc)[1]}
                await self._frame(failed)
            else:
                log.debug("relay stream ack not answered: %r", exc)
        finally:
            self.inflight.release()

    # -- the push -------------------------------------------------------------------

    async def _push(self) -> None:
        service, mailbox = self.app.service, self.who.agent_id
        self.sink = None
        with (
            service.notifier.watching(mailbox) as changed,
            Poll(changed, STREAM_POLL_SECONDS) as poll,
        ):
            try:
                while True:
                    changed.clear()
                    self.acked.clear()
                    if poll.due:
                        poll.due = False
                        # Only a window that no ack moved since the last poll may be
                        # held up by acks made elsewhere: a read of the whole window
                        # per connection and poll would grow with the fleet.
                        if self.pushed and not self.acked_since_poll:
                            await self._resync()
                        self.acked_since_poll = False
                        if self.sink is not None:  # read storage again: another process's mail
                            self.sink.broken = True
                    self.acked_since_read = set()
                    fresh, blocked = await self._next_deliveries()
                    if fresh:
                        self.last = (fresh[-1].sender, fresh[-1].message_id)
                        gone = self.acking | self.acked_since_read
                        fresh = [
                            d for d in fresh
                            if (key := (d.sender, d.message_id)) not in self.pushed
                            and key not in gone
                        ]  # fmt: skip
                    for data in _deliver_frames(fresh):
                        await self._send({"type": "websocket.send", "bytes": data})
                    for d in fresh:
                        self.pushed.add(d)
                    if blocked:  # more waits than the window has room for: acks make room
                        await wait_any([changed, self.acked], STREAM_POLL_SECONDS)
                    elif self.sink is not None and (self.sink.broken or self.sink.queue):
                        continue  # handed over (or broken) while those were sent
                    else:  # only new mail (or the poll) brings more: one event, no task
                        await changed.wait()
            finally:
                self._leave_feed()

    async def _next_deliveries(self) -> tuple[list[Delivery], bool]:
        """What to push next, oldest first, within the window: what the commits handed
        over since the last call, or else (the hand-off broken, or not following yet)
        a read of the mailbox after the last delivery pushed. And whether more waits
        than the window has room for (then only acks let the push go on)."""
        sink, window = self.sink, self.pushed
        if sink is not None and not sink.broken:
            assert self.feed is not None
            taken = self.feed.take(sink, window)
            return taken, bool(sink.queue)
        self._leave_feed()
        room = window.room()
        if room == 0:
            return [], True
        backend, mailbox = self.app.service.backend, self.who.agent_id
        try:
            if self.feed is not None and isinstance(backend, CommitFeed):
                # Read and follow in one step (nothing runs between them): a commit
                # is either in this read or handed over afterwards.
                batch, epoch = backend.read_after(mailbox, self.last, room)
            else:
                batch, epoch = await backend.fetch_after(mailbox, self.last, room), None
        except SealwireError as exc:  # storage unreachable: try again on the poll
            log.warning("relay stream cannot read mailbox: %s", exc)
            return [], False
        n = window.fit(batch)
        if n < len(batch) or len(batch) == room:  # the window is full: more may wait
            return batch[:n], True
        if epoch is not None:  # the read reached the end of the mailbox: follow from it
            assert self.feed is not None
            self.sink = self.feed.follow(mailbox, epoch)
        return batch, False

    def _leave_feed(self) -> None:
        if self.sink is not None:
            assert self.feed is not None
            self.feed.leave(self.who.agent_id, self.sink)
            self.sink = None

    async def _resync(self) -> None:
        """Forget pushed messages acknowledged elsewhere (HTTP, another connection)."""
        pending = await self.app.service.backend.fetch(self.who.agent_id, STREAM_WINDOW)
        self.pushed.keep({(d.sender, d.message_id) for d in pending})


def _deliver_frames(deliveries: list[Delivery]) -> Iterator[bytes]:
    """Binary ``deliver`` frames (the envelopes as bytes after a JSON header) of at
    most STREAM_MAX_BATCH deliveries and about STREAM_FRAME_TARGET_BYTES (a single
    larger delivery goes alone)."""
    parts: list[str] = []
    blobs: list[bytes] = []
    size = 0
    for d in deliveries:
        text = _delivery_header(d)
        more = len(text) + len(d.envelope)
        if parts and (size + more > STREAM_FRAME_TARGET_BYTES or len(parts) >= STREAM_MAX_BATCH):
            yield stream_frame('{"t":"deliver","items":[' + ",".join(parts) + "]", blobs)
            parts, blobs, size = [], [], 0
        parts.append(text)
        blobs.append(d.envelope)
        size += more + 1
    if parts:
        yield stream_frame('{"t":"deliver","items":[' + ",".join(parts) + "]", blobs)


def _delivery_header(d: Delivery) -> str:
    """A delivery's item in a ``deliver`` header, as ``json.dumps`` of its fields would
    write it, five times faster (one per message pushed): the strings escaped by the
    JSON encoder's own function, ``received_at`` a finite float written as JSON does."""
    return (
        f'{{"message_id":{_json_string(d.message_id)},"sender":{_json_string(d.sender)},'
        f'"received_at":{float(d.received_at)!r}}}'
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None
