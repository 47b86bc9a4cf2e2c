"""A2A's JSON-RPC binding over plain HTTP on loopback, for the sidecar.

* :class:`JsonRpcApp` is an ASGI app: ``POST <path>`` takes one JSON-RPC
  request and answers with its response, or with Server-Sent Events
  (``data: <response>``) for the streaming methods; ``GET
  <path>/.well-known/agent-card.json`` returns a card. Service parameters
  travel as HTTP headers.
* :func:`call_upstream` sends one request to an A2A HTTP server and yields its
  result(s), reading SSE for the streaming methods.
* :func:`serve_app` runs an ASGI app on uvicorn and returns its listener.

This is plain HTTP for 127.0.0.1 only: the security is the Sealwire binding on
the other side of the sidecar.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx
import uvicorn

from sealwire.codec import (
    A2A_VERSION,
    A2AError,
    ErrorResponse,
    InternalRpcError,
    Method,
    Request,
    Response,
    encode,
    parse_request,
    parse_response,
    rpc_error_from,
)
from sealwire.errors import ConfigurationError

__all__ = ["HttpListener", "JsonRpcApp", "call_upstream", "serve_app"]

MAX_BODY = 16 * 1024 * 1024
"""The largest request body read, as the frame limit of the other transports."""
MAX_EVENT = 16 * 1024 * 1024
"""The largest SSE event accepted from an upstream."""
CARD_PATH = "/.well-known/agent-card.json"

Route = Callable[[str], tuple[Callable[[Request], AsyncIterator[Any]], Mapping[str, Any]] | None]
"""Maps a request path to (serve one request, the card served beside it), or None (404)."""


class JsonRpcApp:
    """An ASGI app serving A2A JSON-RPC requests for the paths ``route`` knows."""

    def __init__(self, route: Route) -> None:
        self._route = route

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        card_route = (path.removesuffix(CARD_PATH) or "/") if path.endswith(CARD_PATH) else None
        target = self._route(card_route if card_route is not None else path.rstrip("/") or "/")
        if target is None:
            await _plain(send, 404, b"not found")
            return
        serve, card = target
        if card_route is not None and scope["method"] == "GET":
            await _plain(send, 200, json.dumps(card).encode(), b"application/json")
            return
        if scope["method"] != "POST":
            await _plain(send, 405, b"method not allowed")
            return
        body = await _read_body(receive)
        try:
            if body is None:
                raise InternalRpcError("request body too large")
            request = parse_request(body)
        except A2AError as exc:
            await _json(send, encode(ErrorResponse.from_error(exc)))
            return
        if request.method.streaming:
            await _stream(send, request, serve(request))
        else:
            await _json(send, await _one(request, serve(request)))


async def _one(request: Request, results: AsyncIterator[Any]) -> dict[str, Any]:
    try:
        async for result in results:
            return encode(Response(id=request.id, result=result))
        raise InternalRpcError("no result")
    except A2AError as exc:
        return encode(ErrorResponse.from_error(exc, request.id))


async def _stream(send: Any, request: Request, results: AsyncIterator[Any]) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream"),
                            (b"cache-control", b"no-cache")]})  # fmt: skip
    try:
        async for result in results:
            event = encode(Response(id=request.id, result=result))
            await send({"type": "http.response.body", "body": _sse(event), "more_body": True})
    except A2AError as exc:
        event = encode(ErrorResponse.from_error(exc, request.id))
        await send({"type": "http.response.body", "body": _sse(event), "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def _sse(event: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


async def _read_body(receive: Any) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _plain(send: Any, status: int, body: bytes, kind: bytes = b"text/plain") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", kind)]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


async def _json(send: Any, body: Mapping[str, Any]) -> None:
    await _plain(send, 200, json.dumps(body).encode(), b"application/json")


async def call_upstream(
    client: httpx.AsyncClient, url: str, request: Request, headers: Mapping[str, str]
) -> AsyncIterator[Any]:
    """Send ``request`` to the A2A JSON-RPC endpoint ``url``; yield its typed result(s)."""
    body = encode(request)
    sent = {"A2A-Version": A2A_VERSION, **headers}
    if not request.method.streaming:
        response = await client.post(url, json=body, headers=sent)
        yield _result(response.json(), request.method)
        return
    sent["Accept"] = "text/event-stream"
    async with client.stream("POST", url, json=body, headers=sent) as response:
        async for data in _events(response):
            yield _result(json.loads(data), request.method)


def _result(data: Any, method: Method) -> Any:
    typed = parse_response(data, method)
    if isinstance(typed, ErrorResponse):
        raise rpc_error_from(typed.error)
    return typed.result


async def _events(response: httpx.Response) -> AsyncIterator[str]:
    """The ``data`` of each Server-Sent Event (multi-line data joined by newlines)."""
    lines: list[str] = []
    size = 0
    async for line in response.aiter_lines():
        if not line:
            if lines:
                yield "\n".join(lines)
            lines, size = [], 0
        elif line.startswith("data:"):
            size += len(line)
            if size > MAX_EVENT:
                raise InternalRpcError("upstream event too large")
            lines.append(line[5:].removeprefix(" "))
    if lines:
        yield "\n".join(lines)


class HttpListener:
    """A running uvicorn server: its ``url`` and ``close()``."""

    def __init__(self, url: str, server: uvicorn.Server, task: asyncio.Task[None]) -> None:
        self.url = url
        self._server = server
        self._task = task

    async def close(self) -> None:
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await self._task


async def serve_app(app: Callable[..., Awaitable[None]], host: str, port: int) -> HttpListener:
    """Serve ``app`` on ``host:port`` (0: a free port) until the listener is closed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    server = uvicorn.Server(
        uvicorn.Config(
            app, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=1
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise ConfigurationError(f"cannot serve on {host}:{port}")
        await asyncio.sleep(0.01)
    bound = sock.getsockname()
    return HttpListener(f"http://{bound[0]}:{bound[1]}", server, task)
