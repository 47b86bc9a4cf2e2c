"""One HTTP/1.1 connection serving an ASGI app, on h11 (sans-I/O HTTP/1.1, RFC 9112).

Requests on a connection are served one after another (h11 buffers a pipelined
request until the previous answer is complete). The app runs in the connection's
own task and reads the request body on demand through ``receive``, so a slow app
stops the socket being read: TCP's window is the backpressure. Bounds:
:data:`MAX_INCOMPLETE_REQUEST` bytes of request head, :data:`KEEP_ALIVE_TIMEOUT`
seconds to receive a whole request head on an idle connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

import h11

from sealwire.transport._http_stream import (
    ASGI_VERSION,
    KEEP_ALIVE_TIMEOUT,
    READ_CHUNK,
    App,
    ByteReader,
    ByteWriter,
    http_date,
)

__all__ = ["MAX_INCOMPLETE_REQUEST", "Http1Connection"]

log = logging.getLogger("sealwire.transport._http_server")

MAX_INCOMPLETE_REQUEST = 64 * 1024
"""Bytes of a request head buffered before it is refused (431)."""
REFUSAL_LINGER = 1.0
"""Seconds a refused request's sender may go on sending (read and dropped) before the close."""
MAX_REFUSAL_DRAIN = 1024 * 1024
"""Bytes of a refused request read and dropped before the close."""

_NO_BODY_STATUSES = frozenset({204, 304})


@functools.cache
def reason(status: int) -> bytes:
    """The reason phrase of ``status`` (RFC 9110 §15), empty for a code without one."""
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


class Http1Connection:
    """Serves ``app`` on one connection until the client or :meth:`shutdown` ends it."""

    def __init__(
        self, app: App, reader: ByteReader, writer: ByteWriter, scope: dict[str, Any]
    ) -> None:
        self._app = app
        self._reader = reader
        self._writer = writer
        self._scope = scope  # the connection's part: scheme, client, server, extensions
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_INCOMPLETE_REQUEST)
        self._idle = True
        self._closing = False

    def shutdown(self) -> None:
        """Stop after the request being served (at once when idle)."""
        self._closing = True
        if self._idle:
            self._writer.close()

    async def run(self) -> None:
        """Serve requests until the connection ends; closes it."""
        try:
            while not self._closing:
                try:
                    async with asyncio.timeout(KEEP_ALIVE_TIMEOUT):
                        event = await self.next_event()
                except TimeoutError:
                    break
                except h11.RemoteProtocolError as exc:
                    await self._refuse(exc.error_status_hint)
                    break
                if not isinstance(event, h11.Request):
                    break  # the client closed (ConnectionClosed) or read failed
                self._idle = False
                reusable = await self._serve(event)
                self._idle = True
                if not reusable or self._closing:
                    break
                self._h11.start_next_cycle()
        except OSError:
            pass  # the connection broke: nothing to answer
        finally:
            self._writer.close()

    async def next_event(self) -> Any:
        """h11's next event, reading the socket as it needs. :raises OSError:"""
        while True:
            event = self._h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self._reader.read(READ_CHUNK)
            self._h11.receive_data(data)

    async def _serve(self, request: h11.Request) -> bool:
        """Run the app for ``request``; whether the connection can serve another."""
        cycle = _Cycle(self, request)
        try:
            await self._app(cycle.scope(self._scope), cycle.receive, cycle.send)
        except Exception:
            log.exception("HTTP request failed")
            await cycle.answer_500()
            return False
        if not cycle.started:
            await cycle.answer_500()
            return False
        if not cycle.complete:
            return False  # a half-sent answer must not look complete: close
        while self._h11.their_state is h11.SEND_BODY:  # what arrived of a body left unread
            event = self._h11.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return False  # more of it is on the way: closing is cheaper than reading it
        return self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE

    async def _refuse(self, status: int) -> None:
        """Answer a request h11 could not parse (400, 431, ...) and let the caller close."""
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        headers = [(b"content-length", b"0"), (b"connection", b"close"), (b"date", http_date())]
        try:
            response = h11.Response(status_code=status, headers=headers, reason=reason(status))
            data = self._h11.send(response) or b""
            data += self._h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            return
        await self.write(data)
        # Read (and drop) what the client is still sending before closing: a close with
        # unread bytes is a TCP reset, which can destroy the answer before it is read.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REFUSAL_LINGER):
                drained = 0
                while drained < MAX_REFUSAL_DRAIN and (
                    chunk := await self._reader.read(READ_CHUNK)
                ):
                    drained += len(chunk)

    async def write(self, data: bytes) -> None:
        """Send ``data``. :raises OSError: the connection broke."""
        self._writer.write(data)
        await self._writer.drain()

    @property
    def h11(self) -> h11.Connection:
        return self._h11

    async def wait_for_close(self) -> None:
        """Return when the client closes; what it sends meanwhile (a pipelined request)
        is kept for the next cycle, and no longer read past :data:`MAX_INCOMPLETE_REQUEST`."""
        while len(self._h11.trailing_data[0]) <= MAX_INCOMPLETE_REQUEST:
            data = await self._reader.read(READ_CHUNK)
            self._h11.receive_data(data)
            if not data:
                return
        await asyncio.Event().wait()  # until the app is done with the cycle


class _Cycle:
    """One request and its answer: ASGI ``receive``/``send`` over the connection."""

    def __init__(self, connection: Http1Connection, request: h11.Request) -> None:
        self._connection = connection
        self._h11 = connection.h11
        self._request = request
        self._bodiless = request.method == b"HEAD"
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_sent = False
        self._chunked = False
        self._trailers = False
        self.started = False
        self.complete = False
        self._body_done = False
        self._gone = False

    def scope(self, base: dict[str, Any]) -> dict[str, Any]:
        target = self._request.target
        if not target.startswith(b"/") and target != b"*":  # absolute-form (RFC 9112 §3.2.2)
            parts = urlsplit(target)
            target = (parts.path or b"/") + (b"?" + parts.query if parts.query else b"")
        path, _, query = target.partition(b"?")
        return {
            **base,
            "type": "http",
            "asgi": ASGI_VERSION,
            "http_version": self._request.http_version.decode("ascii"),
            "method": self._request.method.decode("ascii"),
            "path": unquote(path.decode("latin-1")),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": list(self._request.headers),
        }

    async def receive(self) -> dict[str, Any]:
        if self._gone or self.complete:
            return {"type": "http.disconnect"}
        try:
            if self._body_done:
                await self._connection.wait_for_close()
                self._gone = True
                return {"type": "http.disconnect"}
            if self._h11.they_are_waiting_for_100_continue:
                informational = h11.InformationalResponse(status_code=100, headers=[])
                await self._connection.write(self._h11.send(informational) or b"")
            event = await self._connection.next_event()
        except (OSError, h11.RemoteProtocolError):
            event = None
        if isinstance(event, h11.Data):
            return {"type": "http.request", "body": bytes(event.data), "more_body": True}
        if isinstance(event, h11.EndOfMessage):
            self._body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        self._gone = True  # the client closed, or sent what is not a body
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self._status = int(message["status"])
            self._headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
            self._trailers = bool(message.get("trailers", False))
            self.started = True
            return
        if not self.started:
            raise RuntimeError(f"{kind} before http.response.start")
        if self._gone or self.complete:
            return  # the client is gone: the app is not told by an error
        data = b"" if self._head_sent else self._response_head()
        if kind == "http.response.body":
            body = bytes(message.get("body", b""))
            if body and not self._bodiless:
                data += self._h11.send(h11.Data(data=body)) or b""
            if not message.get("more_body", False) and not self._trailers:
                data += self._end([])
        elif kind == "http.response.trailers":
            if not message.get("more_trailers", False):
                data += self._end([(bytes(k), bytes(v)) for k, v in message.get("headers", ())])
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if not data:
            return
        try:
            await self._connection.write(data)
        except OSError:
            self._gone = True

    def _response_head(self) -> bytes:
        headers = self._headers
        if not any(name.lower() == b"date" for name, _ in headers):
            headers = [*headers, (b"date", http_date())]
        response = h11.Response(
            status_code=self._status, headers=headers, reason=reason(self._status)
        )
        data = self._h11.send(response) or b""
        self._head_sent = True
        self._chunked = not any(name.lower() == b"content-length" for name, _ in headers)
        self._bodiless = self._bodiless or self._status in _NO_BODY_STATUSES
        return data

    def _end(self, trailers: list[tuple[bytes, bytes]]) -> bytes:
        self.complete = True
        # h11 sends trailers only in a chunked body (RFC 9112 §7.1.2)
        return self._h11.send(h11.EndOfMessage(headers=trailers if self._chunked else [])) or b""

    async def answer_500(self) -> None:
        """A 500 when the app failed before its answer began (else the caller closes)."""
        if self._head_sent or self._gone or self._h11.our_state is not h11.SEND_RESPONSE:
            return
        self.started = True
        self._status = 500
        self._headers = [(b"content-length", b"0"), (b"connection", b"close")]
        self._trailers = False
        await self.send({"type": "http.response.body", "body": b""})
