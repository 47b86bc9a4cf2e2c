"""One HTTP/2 connection serving an ASGI app, on h2 (sans-I/O HTTP/2, RFC 9113).

The connection's task reads frames; each request stream runs the app in a task of
its own. Backpressure is HTTP/2's flow control: received body bytes are
acknowledged (WINDOW_UPDATE) only as the app reads them, so a client can have at
most :data:`STREAM_WINDOW` bytes per stream and :data:`CONNECTION_WINDOW` per
connection waiting; an answer is sent as fast as the client's windows allow.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from sealwire.transport._http_stream import (
    KEEP_ALIVE_TIMEOUT,
    READ_CHUNK,
    App,
    ByteReader,
    ByteWriter,
    http_date,
    request_scope,
)

__all__ = ["CONNECTION_WINDOW", "MAX_CONCURRENT_STREAMS", "STREAM_WINDOW", "Http2Connection"]

log = logging.getLogger("sealwire.transport._http_server")

MAX_CONCURRENT_STREAMS = 100
"""Requests a client may have open at once on one connection (RFC 9113 §6.5.2's
recommended minimum): each is a task running the app."""
STREAM_WINDOW = 1 << 20
"""Bytes of one request's body a client may send ahead of the app reading it."""
CONNECTION_WINDOW = 4 << 20
"""Bytes of all requests' bodies a client may send ahead of the app reading them."""
MAX_HEADER_LIST_SIZE = 64 * 1024
"""Bytes of a request's decoded header list (as HTTP/1.1's request head bound)."""

_DEFAULT_WINDOW = 65_535  # RFC 9113 §6.9.2
_CONNECTION_HEADERS = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                                 b"transfer-encoding", b"upgrade"})  # fmt: skip
"""Headers HTTP/2 forbids (RFC 9113 §8.2.2): dropped from an app's answer."""


class Http2Connection:
    """Serves ``app`` on one connection until the client or :meth:`shutdown` ends it."""

    def __init__(
        self, app: App, reader: ByteReader, writer: ByteWriter, scope: dict[str, Any]
    ) -> None:
        self._app = app
        self._reader = reader
        self._writer = writer
        self._scope = scope
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self._h2 = h2.connection.H2Connection(config=config)
        self._h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
            },
        )
        self._streams: dict[int, _Stream] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._window = asyncio.Event()
        self._closing = False

    def shutdown(self) -> None:
        """Close once no request is open: GOAWAY, then the socket.

        GOAWAY waits for the open requests to end (and new ones are still served until
        then) because httpx, which a2a-sdk uses, fails every request in flight when
        GOAWAY arrives, though RFC 9113 §6.8 lets those up to its last stream finish."""
        self._closing = True
        if not self._streams:
            self._goaway()

    def _goaway(self) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.close_connection()
            self._flush()
        self._writer.close()

    async def run(self) -> None:
        """Serve streams until the connection ends; closes it."""
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_WINDOW)
        self._flush()
        try:
            while not (self._closing and not self._streams):
                if self._streams:
                    data = await self._reader.read(READ_CHUNK)
                else:
                    try:
                        async with asyncio.timeout(KEEP_ALIVE_TIMEOUT):
                            data = await self._reader.read(READ_CHUNK)
                    except TimeoutError:
                        self._goaway()
                        break
                if not data or not self._received(data):
                    break
        except OSError:
            pass  # the connection broke
        except asyncio.CancelledError:
            for task in self._tasks:
                task.cancel()
            raise
        finally:
            for stream in list(self._streams.values()):
                stream.disconnect()
            self._wake_senders()
            if self._tasks:
                await asyncio.wait(set(self._tasks))
            self._writer.close()

    def _received(self, data: bytes) -> bool:
        """Handle what the client sent; False when the connection must end."""
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._flush()  # h2 has queued its GOAWAY
            return False
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self._start(event.stream_id, event.headers)
            elif isinstance(event, h2.events.DataReceived):
                stream = self._streams.get(event.stream_id)
                if stream is None:  # its app is done: give the window back
                    self.consumed(event.stream_id, event.flow_controlled_length)
                else:
                    stream.feed(event.data, event.flow_controlled_length)
            elif isinstance(event, h2.events.StreamEnded):
                if (stream := self._streams.get(event.stream_id)) is not None:
                    stream.end()
            elif isinstance(event, h2.events.StreamReset):
                if (stream := self._streams.get(event.stream_id)) is not None:
                    stream.disconnect()
                self._wake_senders()
            elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                self._wake_senders()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._closing = True  # the client's GOAWAY: close once its streams end
        self._flush()
        return True

    def _start(self, stream_id: int, headers: Any) -> None:
        scope = request_scope(headers, self._scope, "2")
        if scope is None:  # a malformed request (RFC 9113 §8.1.1)
            self._h2.send_headers(stream_id, [(b":status", b"400")], end_stream=True)
            return
        stream = _Stream(self, stream_id)
        self._streams[stream_id] = stream
        task = asyncio.get_running_loop().create_task(self._serve(stream, scope))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, stream: _Stream, scope: dict[str, Any]) -> None:
        failed = False
        try:
            await self._app(scope, stream.receive, stream.send)
        except Exception:
            log.exception("HTTP/2 request failed")
            failed = True
        self._streams.pop(stream.stream_id, None)
        if not stream.head_sent:
            stream.answer_500()
        elif failed:  # a half-sent answer must not look complete
            self.reset(stream, h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif not stream.complete:  # the app returned without ending its answer (or trailers)
            stream.completed()
            await self.send_data(stream, b"", end=True)
        if not stream.client_ended:  # the answer came before the whole body (RFC 9113 §8.1)
            self.reset(stream, h2.errors.ErrorCodes.NO_ERROR)
        self.consumed(stream.stream_id, stream.discard())
        if self._closing and not self._streams:
            self._goaway()

    # -- what streams call ---------------------------------------------------------------

    def consumed(self, stream_id: int, size: int) -> None:
        """The app read ``size`` flow-controlled bytes: the client may send as many more."""
        if size:
            self._h2.acknowledge_received_data(size, stream_id)
            self._flush()

    def send_headers(self, stream: _Stream, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        if stream.gone:
            return
        try:
            self._h2.send_headers(stream.stream_id, headers, end_stream=end)
        except h2.exceptions.StreamClosedError:
            stream.disconnect()
            return
        self._flush()

    async def send_data(self, stream: _Stream, data: bytes, end: bool) -> None:
        """Send ``data`` as the client's windows allow, then drain the socket."""
        view = memoryview(data)
        while not stream.gone:
            try:
                window = self._h2.local_flow_control_window(stream.stream_id)
                size = min(len(view), window, self._h2.max_outbound_frame_size)
                if size == 0 and view:
                    changed = self._window
                    await changed.wait()
                    continue
                last = end and size == len(view)
                self._h2.send_data(stream.stream_id, bytes(view[:size]), end_stream=last)
            except (h2.exceptions.StreamClosedError, h2.exceptions.FlowControlError):
                stream.disconnect()
                return
            self._flush()
            view = view[size:]
            if not view:
                break
        with contextlib.suppress(OSError):
            await self._writer.drain()

    def reset(self, stream: _Stream, code: h2.errors.ErrorCodes) -> None:
        stream.disconnect()
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.reset_stream(stream.stream_id, code)
            self._flush()

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data:
            with contextlib.suppress(OSError):  # the reader learns of it and ends the connection
                self._writer.write(data)

    def _wake_senders(self) -> None:
        self._window.set()
        self._window = asyncio.Event()


class _Stream:
    """One request stream: ASGI ``receive``/``send`` over the connection."""

    def __init__(self, connection: Http2Connection, stream_id: int) -> None:
        self._connection = connection
        self.stream_id = stream_id
        self._chunks: collections.deque[tuple[bytes, int]] = collections.deque()
        self._unread = 0  # flow-controlled bytes received and not yet read by the app
        self._changed = asyncio.Event()
        self._body_done = False
        self.client_ended = False
        self.gone = False
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._trailers = False
        self._started = False
        self.head_sent = False
        self.complete = False

    def feed(self, data: bytes, size: int) -> None:
        self._chunks.append((data, size))
        self._unread += size
        self._changed.set()

    def end(self) -> None:
        self.client_ended = True
        self._changed.set()

    def disconnect(self) -> None:
        self.gone = True
        self._changed.set()

    def completed(self) -> None:
        """The answer is ending: nothing more is sent on this stream."""
        self.complete = True
        self._changed.set()  # a receive waiting after the body: http.disconnect

    def discard(self) -> int:
        """Drop what the app left unread; its flow-controlled size."""
        self._chunks.clear()
        unread, self._unread = self._unread, 0
        return unread

    async def _wait(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    async def receive(self) -> dict[str, Any]:
        while not self._chunks and not self.client_ended and not self.gone:
            await self._wait()
        if self._chunks:
            data, size = self._chunks.popleft()
            self._unread -= size
            self._connection.consumed(self.stream_id, size)
            more = bool(self._chunks) or not self.client_ended
            self._body_done = not more
            return {"type": "http.request", "body": data, "more_body": more}
        if self.client_ended and not self._body_done and not self.gone:
            self._body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        while not self.gone and not self.complete:  # after the body: until the stream ends
            await self._wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self._started:
                raise RuntimeError("http.response.start sent twice")
            self._status = int(message["status"])
            self._headers = [
                (bytes(name).lower(), bytes(value))
                for name, value in message.get("headers", ())
                if bytes(name).lower() not in _CONNECTION_HEADERS
            ]
            self._trailers = bool(message.get("trailers", False))
            self._started = True
            return
        if not self._started:
            raise RuntimeError(f"{kind} before http.response.start")
        if self.gone or self.complete:
            return  # the client is gone: the app is not told by an error
        if kind == "http.response.body":
            body = bytes(message.get("body", b""))
            end = not message.get("more_body", False) and not self._trailers
            if not self.head_sent:
                self._send_head(end=end and not body)
                if end and not body:
                    return
            if body or end:
                if end:
                    self.completed()
                await self._connection.send_data(self, body, end)
        elif kind == "http.response.trailers":
            if not self.head_sent:
                self._send_head(end=False)
            if not message.get("more_trailers", False):
                self.completed()
                trailers = [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", ())]
                self._connection.send_headers(self, trailers, end=True)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")

    def answer_500(self) -> None:
        """A 500 when the app ended before its answer began."""
        self._status, self._headers, self._trailers, self._started = 500, [], False, True
        self._send_head(end=True)

    def _send_head(self, *, end: bool) -> None:
        headers = [(b":status", str(self._status).encode("ascii")), *self._headers]
        if not any(name == b"date" for name, _ in self._headers):
            headers.append((b"date", http_date()))
        self.head_sent = True
        if end:
            self.completed()
        self._connection.send_headers(self, headers, end)
