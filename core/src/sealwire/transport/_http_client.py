"""An A2A JSONRPC-over-HTTP client as a channel of frames (A2A v1.0 §9).

:class:`HttpChannel` has the shape of a :class:`sealwire.binding.SecureChannel`,
so :class:`~sealwire.agent._rpc.RpcConnection` runs over it unchanged: each
request frame it is sent becomes a ``POST`` (service parameters as headers),
and each HTTP answer becomes response frames to :meth:`HttpChannel.receive` -
one for a JSON answer, one per Server-Sent Event for a streaming method, the
last one marked with the service parameter ``Sealwire-Stream: end``.

Requests only go one way over HTTP: the server cannot call back on this
channel. What the channel itself guarantees is what the ``httpx`` client it is
given guarantees (the TLS binding configures it); ``check_response`` may
inspect each answer (the TLS binding checks its channel binding there) and
fail the channel.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx

from sealwire.binding import ChannelClosed, PeerIdentity, Property
from sealwire.codec import (
    A2A_VERSION,
    A2A_VERSION_PARAMETER,
    MAX_FRAME_SIZE,
    STREAM_PARAMETER,
    A2AError,
    ErrorResponse,
    Frame,
    InternalRpcError,
    InvalidAgentResponseError,
    Request,
    decode_frame,
    encode,
    loads,
)
from sealwire.errors import SealwireError, StateError
from sealwire.transport._sse import SseDecoder

__all__ = ["MAX_HTTP_IN_FLIGHT", "HttpChannel"]

log = logging.getLogger(__name__)

MAX_HTTP_IN_FLIGHT = 64
"""Requests in flight on one channel; more get an error frame (as the peer's limit)."""
MAX_RECEIVED_BACKLOG = 4096
"""Response frames buffered for a slow reader before the channel fails."""

CheckResponse = Callable[[httpx.Response], None]


class HttpChannel:
    """Frames over A2A JSON-RPC HTTP requests to ``url`` (see the module docstring)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        peer: PeerIdentity,
        *,
        properties: frozenset[Property] = frozenset(),
        headers: Mapping[str, str] | None = None,
        check_response: CheckResponse | None = None,
    ) -> None:
        self._client = client
        self.url = url
        self._peer = peer
        self._properties = properties
        self._headers = dict(headers or {})
        self._check = check_response
        self._received: asyncio.Queue[bytes | None] = asyncio.Queue(MAX_RECEIVED_BACKLOG)
        self._calls: set[asyncio.Task[None]] = set()
        self._closed = False
        self._failure: SealwireError | None = None
        self._closing: asyncio.Task[None] | None = None

    @property
    def peer(self) -> PeerIdentity:
        return self._peer

    @property
    def properties(self) -> frozenset[Property]:
        return self._properties

    async def send(self, frame: bytes) -> None:
        """Send a request frame as an HTTP request (its answer arrives on :meth:`receive`)."""
        if self._closed:
            raise self._failure or ChannelClosed("the HTTP channel is closed")
        decoded = decode_frame(frame)
        request = decoded.message
        if not isinstance(request, Request):
            raise StateError("only requests travel client to server over HTTP")
        if len(self._calls) >= MAX_HTTP_IN_FLIGHT:
            error = InternalRpcError("too many requests in flight")
            self._put(_error_frame(request.id, error))
            return
        task = asyncio.create_task(self._call(decoded, request))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def receive(self) -> bytes:
        """The next response frame; :class:`ChannelClosed` once the channel is closed."""
        item = await self._received.get()
        if item is None:
            self._received.put_nowait(None)  # every later receive() sees the close too
            raise self._failure or ChannelClosed("the HTTP channel is closed")
        return item

    async def close(self) -> None:
        """Cancel the calls in flight, close the HTTP client, end :meth:`receive`."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._calls):
            task.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)
        await self._client.aclose()
        if self._received.full():
            self._received.get_nowait()  # room for the end marker: the reader is gone anyway
        self._received.put_nowait(None)

    def _put(self, frame: bytes) -> None:
        try:
            self._received.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("HTTP channel to %s: reader too slow, closing", self._peer.agent_id)
            self._fail(InternalRpcError("response backlog overflow"))

    def _fail(self, error: SealwireError) -> None:
        if self._failure is None:
            self._failure = error
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self.close())

    def _headers_for(self, frame: Frame, streaming: bool) -> dict[str, str]:
        headers = {**self._headers, "Content-Type": "application/json"}
        headers.update({k: v for k, v in frame.service_parameters.items()})
        headers.setdefault(A2A_VERSION_PARAMETER, A2A_VERSION)
        headers["Accept"] = "text/event-stream" if streaming else "application/json"
        return headers

    async def _call(self, frame: Frame, request: Request) -> None:
        body = json.dumps(encode(request), ensure_ascii=False, separators=(",", ":")).encode()
        streaming = request.method.streaming
        try:
            async with self._client.stream(
                "POST", self.url, content=body, headers=self._headers_for(frame, streaming)
            ) as response:
                await self._answer(request, response)
        except A2AError as exc:
            self._put(_error_frame(request.id, exc))
        except SealwireError as exc:
            # The answer failed a binding check: nothing more is trusted on this channel.
            self._put(_error_frame(request.id, InternalRpcError("the answer was refused")))
            self._fail(exc)
        except httpx.HTTPError as exc:
            error = InternalRpcError(f"HTTP request failed: {type(exc).__name__}")
            self._put(_error_frame(request.id, error))

    async def _answer(self, request: Request, response: httpx.Response) -> None:
        if response.status_code != 200:
            reason = (await _read_prefix(response, 1024)).decode("utf-8", "replace")
            error = InvalidAgentResponseError(f"HTTP {response.status_code}: {reason[:200]}")
            self._put(_error_frame(request.id, error))
            return
        if self._check is not None:
            self._check(response)
        kind = response.headers.get("content-type", "")
        if kind.startswith("text/event-stream"):
            await self._events(request, response)
            return
        data = await _read_bounded(response, MAX_FRAME_SIZE)
        self._put(_response_frame(request.id, data, final=True))

    async def _events(self, request: Request, response: httpx.Response) -> None:
        decoder = SseDecoder(max_event=MAX_FRAME_SIZE)
        previous: str | None = None
        async for chunk in response.aiter_bytes():
            for event in decoder.feed(chunk):
                if previous is not None:
                    self._put(_response_frame(request.id, previous.encode(), final=False))
                previous = event.data
        if previous is None:
            error = InvalidAgentResponseError("the stream ended without an event")
            self._put(_error_frame(request.id, error))
            return
        self._put(_response_frame(request.id, previous.encode(), final=True))


async def _read_bounded(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    stream: AsyncIterator[bytes] = response.aiter_bytes()
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise InvalidAgentResponseError("the answer is too large")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_prefix(response: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of the body (the rest is not read)."""
    data = b""
    async for chunk in response.aiter_bytes():
        data += chunk[: limit - len(data)]
        if len(data) >= limit:
            break
    return data


def _response_frame(request_id: Any, data: bytes, *, final: bool) -> bytes:
    """A received JSON-RPC answer as a frame; anything unreadable becomes an error frame."""
    try:
        message = loads(data)
    except A2AError:
        return _error_frame(request_id, InvalidAgentResponseError("the answer is not JSON"))
    if not isinstance(message, dict):
        return _error_frame(request_id, InvalidAgentResponseError("the answer is not JSON-RPC"))
    if message.get("id") != request_id and not (message.get("id") is None and "error" in message):
        # Only this request's answer may reach its caller (a null id: an unreadable request).
        return _error_frame(request_id, InvalidAgentResponseError("the answer has another id"))
    if message.get("id") is None:
        message = {**message, "id": request_id}
    params = {A2A_VERSION_PARAMETER: A2A_VERSION, STREAM_PARAMETER: "end" if final else "event"}
    frame = {"serviceParameters": params, "jsonrpc": message}
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode()


def _error_frame(request_id: Any, error: A2AError) -> bytes:
    message = encode(ErrorResponse.from_error(error, request_id))
    frame = {"serviceParameters": {A2A_VERSION_PARAMETER: A2A_VERSION}, "jsonrpc": message}
    return json.dumps(frame, separators=(",", ":")).encode()
