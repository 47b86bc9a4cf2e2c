"""Core's HTTP/1.1 (h11) and HTTP/2 (h2) server under ``serve_http``, over real loopback sockets.

What an ASGI server owes its app and its clients: pipelined and concurrent
requests, bodies both ways past the flow-control windows, streamed answers,
bounded request heads, malformed input refused without harming other
connections, a failing app answered (500) or cut (never a truncated answer that
looks complete), idle connections timed out, and a graceful close.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tls_certs import make_certificate

import sealwire.transport._http1 as http1
from sealwire.transport.http import HttpListener, request_scope, serve_http

BIG = 3 * 1024 * 1024  # past the stream (1 MiB) and connection (4 MiB over two streams) windows


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echo the body at /echo, stream three chunks at /stream, fail at /fail and /cut."""
    assert scope["type"] == "http"
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path == "/fail":
        raise RuntimeError("the app failed before answering")
    headers = [(b"content-type", b"application/octet-stream")]
    if path == "/no-trailers":  # trailers promised, never sent: the server ends the answer
        await send({"type": "http.response.start", "status": 200, "headers": headers,
                    "trailers": True})  # fmt: skip
        await send({"type": "http.response.body", "body": b"body", "more_body": False})
        return
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if path == "/cut":
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("the app failed while answering")
    if path == "/stream":
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    answer = body if path == "/echo" else f"{scope['method']} {path} {scope['query_string']!r}"
    await send({"type": "http.response.body", "body": answer if isinstance(answer, bytes)
                else answer.encode()})  # fmt: skip


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The server's context (ALPN h2 and http/1.1) and an HTTP/2 client's."""
    cert, key = make_certificate(tmp_path, "server")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    server.set_alpn_protocols(["h2", "http/1.1"])
    client = ssl.create_default_context(cafile=str(cert))
    client.set_alpn_protocols(["h2"])
    return server, client


def client_tls_http11(client: ssl.SSLContext) -> ssl.SSLContext:
    """A client context trusting what ``client`` trusts, offering HTTP/1.1 only."""
    context = ssl.create_default_context()
    context.load_verify_locations(cadata=client.get_ca_certs(binary_form=True)[0])
    context.set_alpn_protocols(["http/1.1"])
    return context


@pytest.fixture
async def plain() -> AsyncIterator[HttpListener]:
    async with await serve_http(app, "http://127.0.0.1:0") as listener:
        yield listener


async def _exchange(url: str, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes (or 5 s of silence)."""
    port = int(url.rsplit(":", 1)[1].rstrip("/"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    out = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            out += chunk
    except TimeoutError:
        pass
    finally:
        writer.close()
        await writer.wait_closed()
    return out


async def test_pipelined_requests_are_answered_in_order(plain: HttpListener) -> None:
    requests = (
        b"".join(f"GET /n{i}?q={i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(3))
        + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    out = await _exchange(plain.url, requests)
    bodies = [line for line in out.split(b"\r\n") if line.startswith(b"GET /")]
    assert bodies == [b"GET /n0 b'q=0'", b"GET /n1 b'q=1'", b"GET /n2 b'q=2'", b"GET /last b''"]
    assert out.count(b"HTTP/1.1 200") == 4 and out.count(b"date: ") == 4


async def test_a_request_head_over_the_bound_gets_431_and_the_server_goes_on(
    plain: HttpListener,
) -> None:
    huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (200 * 1024) + b"\r\n\r\n"
    out = await _exchange(plain.url, huge)
    assert out.startswith(b"HTTP/1.1 431 ")
    garbage = await _exchange(plain.url, b"\x16\x03\x01 not http\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 ")
    async with httpx.AsyncClient(trust_env=False) as client:
        answer = await client.get(plain.url + "/still")
    assert answer.text == "GET /still b''"


async def test_chunked_upload_head_and_absolute_form(plain: HttpListener) -> None:
    chunked = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET http://x/abs?a=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    out = await _exchange(plain.url, chunked)
    first, head, absolute = out.split(b"HTTP/1.1 200 ")[1:]
    assert b"\r\nhello world\r\n" in first
    assert b"GET /h" not in head  # no body for HEAD
    assert b"GET /abs b'a=1'" in absolute


async def test_streamed_answers_and_large_bodies_over_http11(plain: HttpListener) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        streamed = await client.get(plain.url + "/stream")
        assert streamed.text == "one two three"
        assert streamed.headers["transfer-encoding"] == "chunked"
        payload = bytes(range(256)) * (BIG // 256)
        echoed = await client.post(plain.url + "/echo", content=payload)
        assert echoed.content == payload


async def test_a_failing_app_gets_500_or_its_connection_cut(
    plain: HttpListener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with httpx.AsyncClient(trust_env=False) as client:
        failed = await client.get(plain.url + "/fail")
        assert failed.status_code == 500
        with pytest.raises(httpx.RemoteProtocolError):  # never a short answer that looks whole
            await client.get(plain.url + "/cut")
        assert (await client.get(plain.url + "/ok")).status_code == 200
    assert [r.getMessage() for r in caplog.records] == ["HTTP request failed"] * 2


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(
    monkeypatch: pytest.MonkeyPatch, plain: HttpListener
) -> None:
    monkeypatch.setattr(http1, "KEEP_ALIVE_TIMEOUT", 0.2)
    port = int(plain.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /")  # a second head, never finished
    try:
        out = await asyncio.wait_for(reader.read(), 5)  # the server closes: read() ends
    finally:
        writer.close()
        await writer.wait_closed()
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"GET / b''" in out


async def test_concurrent_streams_with_bodies_past_the_windows_over_http2(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server, client_tls = tls
    payloads = [bytes([i]) * BIG for i in range(2)]
    async with (
        await serve_http(app, "https://127.0.0.1:0", ssl=server) as listener,
        httpx.AsyncClient(verify=client_tls, http2=True, trust_env=False, timeout=60) as client,
    ):
        answers = await asyncio.gather(
            *(client.post(listener.url + "/echo", content=p) for p in payloads),
            *(client.get(f"{listener.url}/n{i}?i={i}") for i in range(40)),
            client.get(listener.url + "/stream"),
        )
    assert {a.http_version for a in answers} == {"HTTP/2"}
    assert [a.content for a in answers[:2]] == payloads
    assert [a.text for a in answers[2:42]] == [f"GET /n{i} b'i={i}'" for i in range(40)]
    assert answers[-1].text == "one two three"


async def test_a_failing_app_over_http2_gets_500_or_its_stream_reset(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    server, client_tls = tls
    async with (
        await serve_http(app, "https://127.0.0.1:0", ssl=server) as listener,
        httpx.AsyncClient(verify=client_tls, http2=True, trust_env=False) as client,
    ):
        assert (await client.get(listener.url + "/fail")).status_code == 500
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(listener.url + "/cut")
        unfinished = await client.get(listener.url + "/no-trailers")
        assert unfinished.content == b"body"
        ok = await client.get(listener.url + "/ok")  # the connection itself serves on
        assert ok.status_code == 200 and ok.http_version == "HTTP/2"
    assert [r.getMessage() for r in caplog.records] == ["HTTP/2 request failed"] * 2


def _frames(data: bytes) -> list[int]:
    """The types of the HTTP/2 frames in ``data`` (RFC 9113 §4.1)."""
    kinds = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        kinds.append(data[3])
        data = data[9 + length :]
    return kinds


async def test_malformed_http2_frames_end_that_connection_with_goaway(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server, client_tls = tls
    async with await serve_http(app, "https://127.0.0.1:0", ssl=server) as listener:
        port = int(listener.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_tls, server_hostname="127.0.0.1"
        )
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        # a DATA frame on stream 0, which RFC 9113 §6.1 makes a connection error
        writer.write(preface + struct.pack(">I", 4)[1:] + b"\x00\x00\x00\x00\x00\x00abcd")
        out = b""
        with pytest.raises((ConnectionError, ssl.SSLError, TimeoutError)):
            while chunk := await asyncio.wait_for(reader.read(65536), 5):
                out += chunk
            raise ConnectionError("closed")
        writer.close()
        assert 0x7 in _frames(out)  # GOAWAY
        async with httpx.AsyncClient(verify=client_tls, http2=True, trust_env=False) as client:
            assert (await client.get(listener.url + "/after")).text == "GET /after b''"


async def test_close_lets_a_request_finish_and_closes_idle_connections(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server, client_tls = tls
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/slow":
            started.set()
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    listener = await serve_http(slow, "https://127.0.0.1:0", ssl=server)
    port = int(listener.url.rsplit(":", 1)[1])
    http11 = client_tls_http11(client_tls)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=http11)
    writer.write(b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await reader.readuntil(b"done\r\n0\r\n\r\n")).startswith(b"HTTP/1.1 200 OK")
    async with httpx.AsyncClient(verify=client_tls, http2=True, trust_env=False) as client:
        assert (await client.get(listener.url + "/warm")).text == "done"
        pending = asyncio.ensure_future(client.get(listener.url + "/slow"))
        await started.wait()
        closing = asyncio.ensure_future(listener.close())
        await asyncio.sleep(0.1)
        release.set()
        assert (await pending).text == "done"  # the open request finished first
        await closing
    try:  # the idle HTTP/1.1 connection was closed, well before its 5 s keep-alive
        assert await asyncio.wait_for(reader.read(), 2) == b""
    finally:
        writer.close()


_NAMES = st.sampled_from([b":method", b":path", b":authority", b":scheme", b"host", b"x-a"])
_HEADERS = st.lists(st.tuples(_NAMES | st.binary(max_size=12), st.binary(max_size=40)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(_HEADERS)
def test_request_scope_of_arbitrary_headers(headers: list[tuple[bytes, bytes]]) -> None:
    """Hostile HTTP/2 or HTTP/3 header lists give a scope or None, never an exception."""
    base = {"scheme": "https", "extensions": {"tls": {"alpn_protocol": "h3"}}}
    scope = request_scope(headers, base, "3")
    if scope is not None:
        assert scope["http_version"] == "3" and scope["raw_path"].startswith(b"/")
        assert scope["extensions"]["tls"]["alpn_protocol"] == "h3"
        assert all(not name.startswith(b":") for name, _ in scope["headers"])
