"""The A2A v1.0 ``JSONRPC`` binding served over HTTP: the ASGI app.

:class:`A2AHttpApp` (A2A v1.0 §9, "JSON-RPC 2.0 binding"):

* ``GET /.well-known/agent-card.json`` - the agent card (§8.2);
* ``POST <path>`` - one JSON-RPC request; the answer is its JSON-RPC response,
  or for the streaming methods Server-Sent Events whose ``data`` is each
  response (§9.4.2); service parameters (``A2A-Version``, ``A2A-Extensions``)
  are HTTP headers (§3.2.6).

With ``grpc=True`` (and a2a-sdk's protos installed) it serves the ``GRPC``
binding (§10) too: HTTP/2 POSTs to ``/lf.a2a.v1.A2AService/<Method>``
(:mod:`sealwire.transport._grpc`).

With ``rest=True`` the same dispatcher also serves the ``HTTP+JSON`` binding
(§11) under ``path``: ``POST /message:send``, ``GET /tasks/{id}`` and the rest
of §11.3, query parameters for GET and DELETE (§11.5), errors as
``google.rpc.Status`` with an ``ErrorInfo`` reason and the §5.4 HTTP status
(§11.6), streams as Server-Sent Events of bare StreamResponse objects (§11.7).

Who the caller is comes from ``identify_peer(scope, headers)`` (the TLS binding
reads the client certificate from the ASGI ``tls`` extension); a refusal is an
HTTP 401/403 and never reaches the dispatcher. Hostile bodies get JSON-RPC
errors with their codes; bodies are bounded.

The listener that serves it (:func:`serve_http`, pluggable TLS) is in
:mod:`sealwire.transport._http_listener`.
"""

from __future__ import annotations

import json
import logging
import re
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from sealwire.asgi import lifespan
from sealwire.binding import PeerIdentity
from sealwire.codec import (
    A2A_VERSION,
    A2AError,
    ErrorResponse,
    InternalRpcError,
    InvalidRequestError,
    JsonParseError,
    Method,
    Request,
    Response,
    VersionNotSupportedError,
    encode,
    loads,
    parse_request,
    rpc_error_from,
)
from sealwire.errors import (
    AuthenticationError,
    DecodeError,
    PolicyError,
    SealwireError,
)
from sealwire.transport._responses import aclose_results, plain_response, start_response
from sealwire.transport._sse import encode_sse

__all__ = [
    "CARD_PATH",
    "MAX_HTTP_BODY",
    "MAX_HTTP_DRAIN",
    "MAX_HTTP_HEADERS",
    "A2AHttpApp",
    "ExtraRoute",
]

log = logging.getLogger(__name__)

CARD_PATH = "/.well-known/agent-card.json"
MAX_HTTP_BODY = 16 * 1024 * 1024
"""The largest request body read: the frame limit of the other transports."""
MAX_HTTP_HEADERS = 100
"""Headers looked at per request; the listener bounds their total size, this their count."""
MAX_HTTP_DRAIN = 16 * 1024 * 1024
"""Bytes of an unwanted request body (a refused caller's, one past ``max_body``) read
and dropped before the answer goes out. A client still sending when its answer
arrives may see its connection reset before it reads the answer (HTTP/1.1), and
hypercorn, the server this app ran on before, failed the whole HTTP/2 connection on
the DATA frames still coming: the body is read first, as HTTP servers do. Past this
the answer is not delayed further (the body limit itself: no more is read from a
stranger than from a caller)."""

Scope = Mapping[str, Any]
Headers = Mapping[str, str]
Dispatch = Callable[[Request, PeerIdentity], AsyncIterator[Any]]
IdentifyPeer = Callable[[Scope, Headers], Awaitable[PeerIdentity]]
ResponseHeaders = Callable[[Scope, Headers, PeerIdentity], Mapping[str, str]]
ExtraRoute = Callable[[Scope, Headers, bytes], Awaitable[tuple[int, Any]]]
"""Serves a non-A2A route: (scope, headers, body) -> (HTTP status, JSON body)."""


class A2AHttpApp:
    """An ASGI app serving one agent's A2A JSONRPC endpoint at ``path``.

    ``card()`` returns the card JSON to publish; ``routes`` maps (method, path)
    to extra handlers (the TLS binding's enrolment); ``response_headers`` adds
    headers to every A2A answer (the TLS binding's channel binding).
    """

    def __init__(
        self,
        dispatch: Dispatch,
        card: Callable[[], Mapping[str, Any]],
        identify_peer: IdentifyPeer,
        *,
        path: str = "/",
        routes: Mapping[tuple[str, str], ExtraRoute] | None = None,
        response_headers: ResponseHeaders | None = None,
        max_body: int = MAX_HTTP_BODY,
        rest: bool = False,
        grpc: bool = False,
    ) -> None:
        self._dispatch = dispatch
        self._card = card
        self._identify = identify_peer
        self.path = path
        self._routes = dict(routes or {})
        self._response_headers = response_headers
        self._max_body = max_body
        self._rest = rest
        self._grpc = grpc
        self._rest_base = path.rstrip("/")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path == CARD_PATH:
            if method != "GET":
                await plain_response(send, 405, b"method not allowed")
                return
            await _json(send, 200, self._card())
            return
        headers = _headers(scope)
        if self._grpc and method == "POST" and path.startswith("/lf.a2a.v1.A2AService/"):
            await self._grpc_call(scope, headers, receive, send)
            return
        route = self._routes.get((method, path))
        rest = self._rest_route(method, path) if self._rest else None
        if route is not None:
            await self._extra(route, scope, headers, receive, send)
        elif rest is not None:
            await self._rest_call(scope, headers, receive, send, *rest)
        elif path != self.path:
            await plain_response(send, 404, b"not found")
        elif method != "POST":
            await plain_response(send, 405, b"method not allowed")
        else:
            await self._post(scope, headers, receive, send)

    async def _extra(
        self, route: ExtraRoute, scope: Scope, headers: Headers, receive: Any, send: Any
    ) -> None:
        body = await _read_body(receive, self._max_body)
        if body is None:
            await plain_response(send, 413, b"body too large")
            return
        try:
            status, answer = await route(scope, headers, body)
        except SealwireError as exc:
            status, answer = _refusal(exc), {"error": str(exc)[:300]}
        await _json(send, status, answer)

    async def _admit(
        self, scope: Scope, headers: Headers, receive: Any, send: Any
    ) -> tuple[PeerIdentity, dict[str, str], bytes | None] | None:
        """The caller, the headers its answers carry, and its request's body (None when
        over the limit); None when the caller was refused (and answered so)."""
        try:
            peer = await self._identify(scope, headers)
            extra = dict(self._response_headers(scope, headers, peer) if self._response_headers
                         else {})  # fmt: skip
        except SealwireError as exc:
            log.info("refused an HTTP caller: %s", exc)
            await _drain(receive, MAX_HTTP_DRAIN)  # the body first, then the answer
            await plain_response(send, _refusal(exc), str(exc)[:300].encode())
            return None
        return peer, extra, await _read_body(receive, self._max_body)

    async def _results(
        self, request: Request, peer: PeerIdentity, send: Any
    ) -> tuple[AsyncIterator[Any], Any] | None:
        """The dispatcher's results and the first of them, which decides the answer's
        status; None when the dispatcher refused the caller (a denied peer: answered
        403, not a JSON-RPC error)."""
        results = self._dispatch(request, peer)
        try:
            return results, await _first(results, request)
        except SealwireError as exc:
            await aclose_results(results)
            log.info("refused an HTTP caller: %s", exc)
            await plain_response(send, _refusal(exc), str(exc)[:300].encode())
            return None

    async def _post(self, scope: Scope, headers: Headers, receive: Any, send: Any) -> None:
        admitted = await self._admit(scope, headers, receive, send)
        if admitted is None:
            return
        peer, extra, body = admitted
        try:
            if body is None:
                raise InvalidRequestError("request body too large")
            request = parse_request(body)
        except A2AError as exc:
            status = 413 if body is None else 200
            await _json(send, status, encode(ErrorResponse.from_error(exc, exc.request_id)), extra)
            return
        try:
            _check_version(headers)
        except A2AError as exc:
            await _json(send, 200, encode(ErrorResponse.from_error(exc, request.id)), extra)
            return
        answered = await self._results(request, peer, send)
        if answered is None:
            return
        results, first = answered
        if request.method.streaming and isinstance(first, ErrorResponse):
            # As a2a-sdk's server does: a streaming method's error is an ``error``
            # event of an event stream, which SSE clients expect.
            await aclose_results(results)
            await _start_event_stream(send, extra)
            await _event(send, encode(first), error=True)
            await send({"type": "http.response.body", "body": b""})
        elif request.method.streaming and isinstance(first, Response):
            await self._stream(send, request, first, results, extra)
        else:
            await aclose_results(results)
            await _json(send, 200, encode(first), extra)

    async def _stream(
        self,
        send: Any,
        request: Request,
        first: Response,
        results: AsyncIterator[Any],
        extra: Mapping[str, str],
    ) -> None:
        await _start_event_stream(send, extra)
        try:
            await _event(send, encode(first))
            async for result in results:
                await _event(send, encode(Response(id=request.id, result=result)))
        except A2AError as exc:
            await _event(send, encode(ErrorResponse.from_error(exc, request.id)), error=True)
        except Exception:
            log.exception("stream for %s failed", request.method.value)
            error = InternalRpcError("internal error")
            await _event(send, encode(ErrorResponse.from_error(error, request.id)), error=True)
        finally:
            await aclose_results(results)
        await send({"type": "http.response.body", "body": b""})

    async def _grpc_call(self, scope: Scope, headers: Headers, receive: Any, send: Any) -> None:
        """The ``GRPC`` binding (§10, see :mod:`sealwire.transport._grpc`)."""
        from sealwire.transport._grpc import serve_grpc

        def extra(peer: PeerIdentity) -> Mapping[str, str]:
            return self._response_headers(scope, headers, peer) if self._response_headers else {}

        await serve_grpc(
            scope, headers, receive, send, identify=self._identify, dispatch=self._dispatch,
            extra_headers=extra, read_body=_read_body, first=_first, check_version=_check_version,
        )  # fmt: skip

    # -- the HTTP+JSON (REST) binding -------------------------------------------------------

    def _rest_route(self, method: str, path: str) -> tuple[Method, dict[str, str]] | None:
        """The A2A method and path parameters of a REST request (None: not one)."""
        if not path.startswith(self._rest_base + "/"):
            return None
        tail = path[len(self._rest_base) :]
        for verb, pattern, a2a_method in _REST_ROUTES:
            match = pattern.fullmatch(tail)
            if match is not None and verb == method:
                return a2a_method, match.groupdict()
        return None

    async def _rest_call(
        self,
        scope: Scope,
        headers: Headers,
        receive: Any,
        send: Any,
        method: Method,
        path_params: dict[str, str],
    ) -> None:
        admitted = await self._admit(scope, headers, receive, send)
        if admitted is None:
            return
        peer, extra, body = admitted
        try:
            if body is None:
                raise InvalidRequestError("request body too large")
            params = _rest_params(method, scope, body) | path_params
            request = parse_request(
                {"jsonrpc": "2.0", "id": 0, "method": method.value, "params": params}
            )
            _check_version(headers)
        except A2AError as exc:
            error = ErrorResponse.from_error(exc, 0)
            await _rest_error(send, error, extra)
            return
        answered = await self._results(request, peer, send)
        if answered is None:
            return
        results, first = answered
        if isinstance(first, ErrorResponse):  # before any event: an HTTP error (§11.6)
            await aclose_results(results)
            await _rest_error(send, first, extra)
        elif not method.streaming:
            await aclose_results(results)
            await _json(send, 200, encode(first)["result"], extra, kind=REST_MEDIA_TYPE)
        else:
            await _start_event_stream(send, extra)
            try:
                await _event(send, encode(first)["result"])
                async for result in results:
                    await _event(send, encode(Response(id=0, result=result))["result"])
            except Exception as exc:
                if not isinstance(exc, A2AError):
                    log.exception("stream for %s failed", method.value)
                    exc = InternalRpcError("internal error")
                payload = _rest_error_body(ErrorResponse.from_error(exc, 0))[1]
                await _event(send, payload, error=True)
            finally:
                await aclose_results(results)
            await send({"type": "http.response.body", "body": b""})


REST_MEDIA_TYPE = b"application/a2a+json"
"""The media type of HTTP+JSON answers (§11.1)."""
_ID = r"(?P<id>[^/]+)"
_TASK = r"(?P<taskId>[^/]+)"
_REST_ROUTES: tuple[tuple[str, re.Pattern[str], Method], ...] = tuple(
    (verb, re.compile(pattern), method)
    for verb, pattern, method in (
        ("POST", r"/message:send", Method.SEND_MESSAGE),
        ("POST", r"/message:stream", Method.SEND_STREAMING_MESSAGE),
        ("GET", r"/tasks", Method.LIST_TASKS),
        ("POST", r"/tasks/(?P<id>[^/]+):cancel", Method.CANCEL_TASK),
        ("POST", r"/tasks/(?P<id>[^/]+):subscribe", Method.SUBSCRIBE_TO_TASK),
        ("GET", rf"/tasks/{_ID}", Method.GET_TASK),
        ("POST", rf"/tasks/{_TASK}/pushNotificationConfigs",
         Method.CREATE_TASK_PUSH_NOTIFICATION_CONFIG),
        ("GET", rf"/tasks/{_TASK}/pushNotificationConfigs",
         Method.LIST_TASK_PUSH_NOTIFICATION_CONFIGS),
        ("GET", rf"/tasks/{_TASK}/pushNotificationConfigs/{_ID}",
         Method.GET_TASK_PUSH_NOTIFICATION_CONFIG),
        ("DELETE", rf"/tasks/{_TASK}/pushNotificationConfigs/{_ID}",
         Method.DELETE_TASK_PUSH_NOTIFICATION_CONFIG),
        ("GET", r"/extendedAgentCard", Method.GET_EXTENDED_AGENT_CARD),
    )
)  # fmt: skip
"""§11.3: (HTTP method, path under the endpoint's, A2A method); ``:cancel`` and
``:subscribe`` are tried before ``GET /tasks/{id}`` takes a colon into an id."""

_REST_ERRORS: dict[int, tuple[int, str]] = {
    -32001: (404, "NOT_FOUND"),
    -32002: (400, "FAILED_PRECONDITION"),
    -32003: (400, "FAILED_PRECONDITION"),
    -32004: (400, "FAILED_PRECONDITION"),
    -32005: (400, "INVALID_ARGUMENT"),
    -32006: (500, "INTERNAL"),
    -32007: (400, "FAILED_PRECONDITION"),
    -32008: (400, "FAILED_PRECONDITION"),
    -32009: (400, "FAILED_PRECONDITION"),
    -32700: (400, "INVALID_ARGUMENT"),
    -32600: (400, "INVALID_ARGUMENT"),
    -32601: (404, "NOT_FOUND"),
    -32602: (400, "INVALID_ARGUMENT"),
    -32603: (500, "INTERNAL"),
}
"""§5.4 and §11.6: JSON-RPC code -> (HTTP status, google.rpc status); the details
(``ErrorInfo`` reason, metadata, field violations) are the error's own (§9.5)."""


def _rest_params(method: Method, scope: Scope, body: bytes) -> dict[str, Any]:
    """The request's params: its JSON body (POST), or its query string (GET, DELETE)
    with booleans and numbers read by the field's type (§11.5)."""
    if scope["method"] == "POST":
        if not body.strip():
            return {}
        try:
            params = loads(body)  # strict UTF-8: json.loads alone lets encoded surrogates in
        except JsonParseError:
            raise JsonParseError("the body is not JSON") from None
        if not isinstance(params, dict):
            raise InvalidRequestError("the body must be a JSON object")
        return params
    query = scope.get("query_string", b"").decode("latin-1")
    hints = typing.get_type_hints(method.params_class)
    out: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True)[:MAX_HTTP_HEADERS]:
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
        if hints.get(name) in (bool, bool | None) and value in ("true", "false"):
            out[key] = value == "true"
        else:
            out[key] = value
    return out


def _rest_error_body(error: ErrorResponse) -> tuple[int, dict[str, Any]]:
    status, grpc = _REST_ERRORS.get(error.error.code, (500, "INTERNAL"))
    details = error.error.data
    if not isinstance(details, list):  # an error object made without its details
        details = rpc_error_from(error.error).details()
    body = {"code": status, "status": grpc, "message": error.error.message, "details": details}
    return status, {"error": body}


async def _rest_error(send: Any, error: ErrorResponse, extra: Mapping[str, str]) -> None:
    status, body = _rest_error_body(error)
    await _json(send, status, body, extra, kind=REST_MEDIA_TYPE)


async def _first(results: AsyncIterator[Any], request: Request) -> Response | ErrorResponse:
    """The handler's first result as a response (an A2A error or a failure as an error
    response); a refusal of the caller (:class:`AuthenticationError`,
    :class:`PolicyError`) propagates, to be answered with an HTTP status."""
    try:
        async for result in results:
            return Response(id=request.id, result=result)
        raise InternalRpcError("the handler produced no result")
    except A2AError as exc:
        return ErrorResponse.from_error(exc, request.id)
    except (AuthenticationError, PolicyError):
        raise
    except Exception:
        log.exception("handler for %s failed", request.method.value)
        return ErrorResponse.from_error(InternalRpcError("internal error"), request.id)


def _refusal(exc: SealwireError) -> int:
    if isinstance(exc, AuthenticationError | PolicyError):
        return 403
    return 400 if isinstance(exc, DecodeError) else 401


def _check_version(headers: Headers) -> None:
    version = headers.get("a2a-version")
    if version and version.split(".", 1)[0] != A2A_VERSION.split(".", 1)[0]:
        raise VersionNotSupportedError(f"A2A version {version[:16]} is not supported")


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in list(scope.get("headers", []))[:MAX_HTTP_HEADERS]:
        out[name.decode("latin-1").lower()] = value.decode("latin-1")
    return out


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The request body; None when it is over ``limit`` (its rest is drained)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if message.get("more_body"):
                await _drain(receive, MAX_HTTP_DRAIN)
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _drain(receive: Any, limit: int) -> None:
    """Read and drop the rest of a request body, at most about ``limit`` bytes
    (:data:`MAX_HTTP_DRAIN` says why)."""
    size = 0
    while size <= limit:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            return
        size += len(message.get("body", b""))


async def _json(
    send: Any,
    status: int,
    body: Any,
    extra: Mapping[str, str] | None = None,
    *,
    kind: bytes = b"application/json",
) -> None:
    await start_response(send, status, kind, extra or {})
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    await send({"type": "http.response.body", "body": data})


async def _event(send: Any, body: Mapping[str, Any], *, error: bool = False) -> None:
    data = encode_sse(json.dumps(body, ensure_ascii=False, separators=(",", ":")))
    if error:  # the event type a2a-sdk's clients raise on
        data = b"event: error\n" + data
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _start_event_stream(send: Any, extra: Mapping[str, str]) -> None:
    await start_response(send, 200, b"text/event-stream", {"cache-control": "no-cache", **extra})
