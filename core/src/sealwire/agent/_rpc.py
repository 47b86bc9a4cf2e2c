"""JSON-RPC over a secure channel of A2A frames: calls, streams and dispatch.

One :class:`RpcConnection` serves both directions of a channel: agents are
peers, so either side may send requests. Correlation is by JSON-RPC id; a
stream is a run of response frames for one id whose last one carries the
service parameter ``Sealwire-Stream: end``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from sealwire import telemetry
from sealwire.binding import ChannelClosed, PeerIdentity, SecureChannel
from sealwire.codec import (
    A2A_VERSION,
    STREAM_PARAMETER,
    A2AError,
    ErrorResponse,
    Frame,
    InternalRpcError,
    Method,
    Request,
    Response,
    VersionNotSupportedError,
    decode_frame,
    encode_frame,
    parse_response,
    rpc_error_from,
)
from sealwire.errors import SealwireError
from sealwire.transport import TransportClosed

__all__ = ["Dispatcher", "RpcConnection"]

log = logging.getLogger(__name__)

MAX_INBOUND_REQUESTS = 64
"""Requests a peer may have in flight on one connection; more are refused, so a
peer cannot make us run unbounded handler tasks."""

MAX_STREAM_BACKLOG = 1024
"""Stream events buffered for a slow local consumer before the stream fails."""

Dispatcher = Callable[[Request, PeerIdentity], AsyncIterator[Any]]
"""Serves one request: yields one result (unary) or several (a stream)."""


class _Stream:
    def __init__(self, method: Method) -> None:
        self.method = method
        # (response, is_final) pairs; None when the connection closed
        self.queue: asyncio.Queue[tuple[Response | ErrorResponse, bool] | None] = asyncio.Queue(
            MAX_STREAM_BACKLOG
        )


class RpcConnection:
    """Requests, responses and streams over one :class:`SecureChannel`.

    Its frames are sent one at a time (a send waits for the one before it), unless
    ``concurrent_sends``: the channel takes sends made at once (a mailbox channel,
    where a send lasts until the relay has committed the message: one at a time,
    calls in flight would each wait for the relay in turn instead of sharing its
    frames and commits).
    """

    def __init__(
        self,
        channel: SecureChannel,
        dispatcher: Dispatcher | None,
        *,
        on_close: Callable[[RpcConnection], Awaitable[None] | None] | None = None,
        concurrent_sends: bool = False,
    ) -> None:
        self.channel = channel
        self._dispatcher = dispatcher
        self._on_close = on_close
        self._ids = itertools.count(1)
        self._pending: dict[int | str, _Stream] = {}
        self._inbound: dict[int | str, asyncio.Task[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._send_lock: contextlib.AbstractAsyncContextManager[Any] = (
            contextlib.nullcontext() if concurrent_sends else asyncio.Lock()
        )
        self.closed = asyncio.Event()

    @property
    def peer(self) -> PeerIdentity:
        return self.channel.peer

    def start(self) -> None:
        """Start reading frames from the channel."""
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_loop(), name="sealwire-rpc-reader")

    async def _send(self, frame: Frame) -> None:
        data = encode_frame(frame)
        async with self._send_lock:
            if telemetry.ENABLED:
                with telemetry.span("sealwire.seal", {"sealwire.peer": self.peer.agent_id}):
                    await self.channel.send(data)
                _count_frame("out", len(data))
            else:
                await self.channel.send(data)

    async def call(self, method: Method, params: Any) -> Any:
        """Send a request and return its typed result; a peer's error raises its A2AError."""
        # Closed here, not left to the garbage collector (whose finalizer would hand
        # the generator's close to the event loop as one more task, for every call).
        async with contextlib.aclosing(self._request(method, params)) as results:
            async for result in results:
                return result
        raise InternalRpcError("the peer closed the stream without a result")

    def stream(self, method: Method, params: Any) -> AsyncIterator[Any]:
        """Send a streaming request and yield each typed event."""
        return self._request(method, params)

    async def _request(self, method: Method, params: Any) -> AsyncGenerator[Any, None]:
        if self.closed.is_set():
            raise ChannelClosed("connection closed")
        request_id = next(self._ids)
        pending = _Stream(method)
        self._pending[request_id] = pending
        try:
            await self._send(
                Frame(
                    service_parameters={"A2A-Version": A2A_VERSION},
                    message=Request(id=request_id, method=method, params=params),
                )
            )
            while True:
                item = await pending.queue.get()
                if item is None:
                    raise ChannelClosed("connection closed before the response")
                response, final = item
                if isinstance(response, ErrorResponse):
                    raise rpc_error_from(response.error)
                yield response.result
                if final:
                    return
        finally:
            self._pending.pop(request_id, None)

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.channel.receive()
                if telemetry.ENABLED:
                    _count_frame("in", len(data))
                try:
                    frame = decode_frame(data)
                except A2AError as exc:
                    # A malformed request whose id is known gets its JSON-RPC error;
                    # anything else is dropped (there is nobody to answer).
                    log.info("malformed frame from %s: %s", self.peer.agent_id, exc.code)
                    if exc.request_id is not None:
                        await self._send_error(exc.request_id, exc)
                    continue
                except SealwireError as exc:
                    log.info(
                        "dropping malformed frame from %s: %s",
                        self.peer.agent_id,
                        type(exc).__name__,
                    )
                    continue
                await self._handle(frame)
        except (ChannelClosed, TransportClosed):
            pass
        except SealwireError as exc:
            log.warning("connection to %s failed: %s", self.peer.agent_id, type(exc).__name__)
        finally:
            await self._shutdown()

    async def _handle(self, frame: Frame) -> None:
        message = frame.message
        if isinstance(message, Request):
            version = frame.version
            if version is not None and version.split(".", 1)[0] != A2A_VERSION.split(".", 1)[0]:
                error = VersionNotSupportedError(f"A2A version {version[:16]} is not supported")
                await self._send_error(message.id, error)
                return
            self._accept_request(message)
            return
        pending = self._pending.get(message.id) if message.id is not None else None
        if pending is None:
            log.debug("response for unknown request id from %s", self.peer.agent_id)
            return
        final = frame.service_parameters.get(STREAM_PARAMETER, "end") == "end"
        item: Response | ErrorResponse
        if isinstance(message, ErrorResponse):
            item, final = message, True
        else:
            try:
                item = parse_response(message, pending.method)
            except A2AError as exc:
                item, final = ErrorResponse(id=message.id, error=exc.to_rpc_error()), True
        try:
            pending.queue.put_nowait((item, final))
        except asyncio.QueueFull:
            overflow = InternalRpcError("stream backlog overflow").to_rpc_error()
            pending.queue = asyncio.Queue(1)
            pending.queue.put_nowait((ErrorResponse(id=message.id, error=overflow), True))

    def _accept_request(self, request: Request) -> None:
        if self._dispatcher is None or len(self._inbound) >= MAX_INBOUND_REQUESTS:
            error = InternalRpcError("too many requests in flight")
            task = asyncio.create_task(self._send_error(request.id, error))
        elif request.id in self._inbound:
            return  # a duplicate id in flight: the first one answers
        else:
            task = asyncio.create_task(self._serve(request))
        self._inbound[request.id] = task
        task.add_done_callback(functools.partial(self._request_done, request.id))

    def _request_done(self, request_id: int | str, _task: asyncio.Task[None]) -> None:
        self._inbound.pop(request_id, None)

    async def _send_error(self, request_id: int | str, error: A2AError) -> None:
        with contextlib.suppress(ChannelClosed, TransportClosed):
            await self._send(
                Frame(
                    service_parameters={"A2A-Version": A2A_VERSION},
                    message=ErrorResponse(id=request_id, error=error.to_rpc_error()),
                )
            )

    async def _serve(self, request: Request) -> None:
        assert self._dispatcher is not None
        streaming = request.method.streaming
        previous: Any = _NOTHING
        try:
            async for result in self._dispatcher(request, self.peer):
                if previous is not _NOTHING:
                    await self._send_result(request.id, previous, "event")
                previous = result
            if previous is _NOTHING:
                raise InternalRpcError("the handler produced no result")
            await self._send_result(request.id, previous, "end" if streaming else None)
        except A2AError as exc:
            await self._send_error(request.id, exc)
        except (ChannelClosed, TransportClosed):
            pass
        except Exception:
            log.exception("handler for %s failed", request.method.value)
            await self._send_error(request.id, InternalRpcError("internal error"))

    async def _send_result(self, request_id: int | str, result: Any, stream: str | None) -> None:
        params: dict[str, str] = {"A2A-Version": A2A_VERSION}
        if stream is not None:
            params[STREAM_PARAMETER] = stream
        await self._send(
            Frame(service_parameters=params, message=Response(id=request_id, result=result))
        )

    async def _shutdown(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for pending in self._pending.values():
            with contextlib.suppress(asyncio.QueueFull):
                pending.queue.put_nowait(None)
        for task in list(self._inbound.values()):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.channel.close()
        if self._on_close is not None:
            outcome = self._on_close(self)
            if outcome is not None:
                await outcome

    async def close(self) -> None:
        """Close the channel and fail every pending call."""
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._shutdown()


_NOTHING: Any = object()


def _count_frame(direction: str, size: int) -> None:
    """Count one frame sent or received, and its bytes (OpenTelemetry, when installed)."""
    attributes = {"direction": direction}
    telemetry.count("sealwire.messages", 1, attributes)
    telemetry.count("sealwire.bytes", size, attributes)
