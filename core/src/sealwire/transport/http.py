"""The A2A ``JSONRPC`` binding over HTTP (A2A v1.0 §9), for bindings that carry it.

A separate module from :mod:`sealwire.transport` because it imports the HTTP
stacks (h11, h2, httpx): only what serves or calls HTTP pays for them.

* :class:`A2AHttpApp` - the ASGI app (agent card, JSON-RPC POST, Server-Sent
  Events), and :func:`serve_http` - it on core's own HTTP/1.1 (h11) and HTTP/2
  (h2) server (TLS client certificates reach the app as the ASGI ``tls``
  extension); :func:`request_scope` - the ASGI scope of an HTTP/2 or HTTP/3
  request, for a plugin serving another HTTP version (sealwire-tls's HTTP/3);
* :class:`HttpChannel` - a client as a channel of frames, so the agent's RPC
  layer runs over HTTP unchanged;
* :class:`SseDecoder` and :func:`encode_sse` - Server-Sent Events.
"""

from __future__ import annotations

from sealwire.transport._grpc import GRPC_PREFIX, grpc_available
from sealwire.transport._http_client import MAX_HTTP_IN_FLIGHT, HttpChannel
from sealwire.transport._http_listener import (
    CLOSE_GRACE,
    HttpListener,
    TlsConnection,
    TlsLayer,
    serve_http,
    tls_extension,
)
from sealwire.transport._http_server import (
    CARD_PATH,
    MAX_HTTP_BODY,
    MAX_HTTP_HEADERS,
    A2AHttpApp,
    ExtraRoute,
)
from sealwire.transport._http_stream import request_scope
from sealwire.transport._sse import SseDecoder, SseEvent, encode_sse

__all__ = [
    "CARD_PATH",
    "GRPC_PREFIX",
    "CLOSE_GRACE",
    "MAX_HTTP_BODY",
    "MAX_HTTP_HEADERS",
    "MAX_HTTP_IN_FLIGHT",
    "A2AHttpApp",
    "ExtraRoute",
    "HttpChannel",
    "HttpListener",
    "SseDecoder",
    "SseEvent",
    "TlsConnection",
    "TlsLayer",
    "encode_sse",
    "grpc_available",
    "request_scope",
    "serve_http",
    "tls_extension",
]
