"""A refused HTTP request logs no error, on HTTP/1.1, HTTP/2 and HTTP/3 (issue 18, item 8).

The app answered 403 (no client certificate) or 413 (body over the limit)
before reading the request body. Over HTTP/2 the body's DATA frames then
arrived for a stream the server (hypercorn, then) had already closed: a ``KeyError``
in its h2 protocol ended the whole connection (every other request on it) and
surfaced as an unhandled exception. Now the body is read (and dropped) first; each version
answers every refused request on one connection, and nothing is logged at ERROR.
"""

from __future__ import annotations

import gc
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tls_certs import make_certificate

from sealwire.binding import PeerIdentity
from sealwire.codec import Request
from sealwire.errors import AuthenticationError
from sealwire.identity import Identity
from sealwire.transport.http import GRPC_PREFIX, A2AHttpApp, grpc_available, serve_http

RPC = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "t"}}
MAX_BODY = 4096
# Bodies refused callers send: empty, small, and several HTTP/2 DATA frames' worth
# (the default frame is 16 KiB) so the body is still arriving when the answer is ready.
BODY_SIZES = (0, 100, 200_000)
REFUSALS_PER_CONNECTION = 3
CALLER = Identity.generate().public


async def dispatch(request: Request, peer: PeerIdentity) -> AsyncIterator[Any]:
    raise AssertionError("a refused request reached the dispatcher")
    yield  # pragma: no cover


async def identify(scope: Any, headers: Any) -> PeerIdentity:
    if "x-caller" in headers:
        return PeerIdentity(agent_id=CALLER.agent_id, identity=CALLER)
    raise AuthenticationError("a client certificate is required")


def _no_errors(caplog: pytest.LogCaptureFixture) -> None:
    gc.collect()  # an unretrieved task exception is logged when its task is collected
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


@pytest.mark.parametrize("http2", [False, True], ids=["HTTP/1.1", "HTTP/2"])
async def test_refusals_over_tcp_log_no_error(
    http2: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cert, key = make_certificate(tmp_path, "server")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    server_tls.set_alpn_protocols(["h2", "http/1.1"])
    app = A2AHttpApp(dispatch, lambda: {}, identify, rest=True, max_body=MAX_BODY)
    client_tls = ssl.create_default_context(cafile=str(cert))
    version = "HTTP/2" if http2 else "HTTP/1.1"
    async with (
        await serve_http(app, "https://127.0.0.1:0", ssl=server_tls) as listener,
        httpx.AsyncClient(verify=client_tls, http2=http2, trust_env=False) as http,
    ):
        for size in BODY_SIZES:
            for _ in range(REFUSALS_PER_CONNECTION):
                for path in ("", "/message:send"):
                    answer = await http.post(listener.url + path, content=b"x" * size)
                    assert answer.status_code == 403 and answer.http_version == version
        # a known caller whose body is over the limit: 413 (JSON-RPC) or 400 (REST)
        too_big = await http.post(listener.url, content=b"x" * 200_000,
                                  headers={"x-caller": "1"})  # fmt: skip
        assert too_big.status_code == 413
        rest = await http.post(listener.url + "/message:send", content=b"x" * 200_000,
                               headers={"x-caller": "1"})  # fmt: skip
        assert rest.status_code == 400 and rest.http_version == version
    _no_errors(caplog)


async def test_grpc_refusals_log_no_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """gRPC on the same endpoint (HTTP/2 only): a refused call reads its body first too,
    and ends with the PERMISSION_DENIED trailers on a connection that stays up."""
    if not grpc_available():
        pytest.skip("gRPC needs a2a-sdk's protos (sealwire[a2a])")
    caplog.set_level(logging.INFO)
    cert, key = make_certificate(tmp_path, "server")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    server_tls.set_alpn_protocols(["h2"])
    app = A2AHttpApp(dispatch, lambda: {}, identify, grpc=True, max_body=MAX_BODY)
    client_tls = ssl.create_default_context(cafile=str(cert))
    async with (
        await serve_http(app, "https://127.0.0.1:0", ssl=server_tls) as listener,
        httpx.AsyncClient(verify=client_tls, http2=True, trust_env=False) as http,
    ):
        for size in BODY_SIZES:
            for _ in range(REFUSALS_PER_CONNECTION):
                answer = await http.post(listener.url + GRPC_PREFIX + "GetTask",
                                         content=b"x" * size,
                                         headers={"content-type": "application/grpc"})  # fmt: skip
                assert answer.status_code == 200 and answer.http_version == "HTTP/2"
                assert answer.headers["content-type"] == "application/grpc"
    _no_errors(caplog)


async def test_refusals_over_http3_log_no_error(caplog: pytest.LogCaptureFixture) -> None:
    """HTTP/3 (the TLS binding's QUIC listener): no certificate, so 403 from the app."""
    pytest.importorskip("aioquic")
    from cryptography.hazmat.primitives.serialization import Encoding

    from sealwire_tls import self_signed_certificate
    from sealwire_tls.http3 import Http3Transport
    from sealwire_tls.testing import tls_agent

    caplog.set_level(logging.INFO)
    server = tls_agent("server", options={"http3": True})
    async with server:
        url = httpx.URL(server.card.offers[0].url)
        pin = self_signed_certificate(server.identity).public_bytes(Encoding.DER)
        transport = Http3Transport(url.host, url.port or 443, certificate_chain=[],
                                   private_key=None, server_certificate=pin,
                                   connect_timeout=10.0)  # fmt: skip
        async with httpx.AsyncClient(transport=transport) as http:
            for size in BODY_SIZES:
                for _ in range(REFUSALS_PER_CONNECTION):
                    answer = await http.post(str(url), content=b"x" * size)
                    assert answer.status_code == 403 and answer.http_version == "HTTP/3"
    await server.stop()
    _no_errors(caplog)
