"""TLS binding benchmark: mutual TLS 1.3 handshakes/s and A2A requests/s, HTTP/1.1, /2 and /3.

Run: ``uv run python benchmarks/bench_tls.py [--seconds 2.0]``

One process, one event loop: a Sealwire agent serves A2A over HTTPS on
loopback (hypercorn) and an external client (an ``httpx`` client holding a
pinned client certificate, as a2a-sdk would) calls it, so every figure
includes both ends' work on the same cores.

* handshakes/s: complete mutual TLS 1.3 handshakes (Ed25519 certificates on
  both sides), bare ``asyncio`` connections closed right after; for HTTP/3,
  QUIC connection setups (the QUIC handshake with both certificates, the
  server's anchor check, the client's pin check, HTTP/3 SETTINGS), closed
  right after;
* new connection + one ``SendMessage``/s, per HTTP version (a handshake, ALPN,
  one JSON-RPC call);
* requests/s over kept-alive connections, one at a time and 16 in flight,
  per HTTP version (``SendMessage`` answered by a reply message).

HTTP/3 (the agent has ``http3 = true``; the client is ``Http3Transport``, one
QUIC connection multiplexing the requests) is measured when aioquic is
installed (the ``http3`` extra); the three columns come from the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization

from sealwire.agent import Agent
from sealwire.agent._tasks import TaskContext
from sealwire.identity import Identity
from sealwire_tls import key_files, pem, self_signed_certificate
from sealwire_tls.testing import export_client_files, tls_agent

try:
    from sealwire_tls.http3 import Http3Transport
except ImportError:  # no aioquic: HTTP/3 is not measured
    Http3Transport = None  # type: ignore[assignment,misc]

BODY = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {
    "messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}}).encode()  # fmt: skip
HEADERS = {"Content-Type": "application/json", "A2A-Version": "1.0"}


async def reply(task: TaskContext) -> None:
    await task.reply("hello")


async def rate(action: Callable[[], Awaitable[object]], seconds: float) -> float:
    """Completed ``action`` calls per second over about ``seconds`` (after a warm-up call)."""
    await action()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        await action()
        calls += 1
    return calls / (time.perf_counter() - start)


async def concurrent_rate(
    action: Callable[[], Awaitable[object]], seconds: float, width: int
) -> float:
    """Calls per second with ``width`` calls kept in flight."""
    await action()
    done = 0
    start = time.perf_counter()

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() - start < seconds:
            await action()
            done += 1

    await asyncio.gather(*(worker() for _ in range(width)))
    return done / (time.perf_counter() - start)


def client_ssl(folder: Path, caller: Identity, agent: Agent) -> ssl.SSLContext:
    cert, key, server = export_client_files(caller, folder, self_signed_certificate(agent.identity))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=str(server))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


ROWS = ("handshakes", "connect", "one", "many")
LABELS = {
    "handshakes": "mutual TLS 1.3 handshakes/s",
    "connect": "new connection + call/s",
    "one": "requests/s, 1 in flight",
    "many": "requests/s, 16 in flight",
}


async def bench(seconds: float) -> None:
    caller = Identity.generate()
    http3 = Http3Transport is not None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "allowed.pem").write_bytes(pem([self_signed_certificate(caller)]))
        options = {"client_certificates": [str(folder / "allowed.pem")], "http3": http3}
        agent = tls_agent("bench", options=options)
        agent.on_message(reply)
        async with agent:
            agent.trust.pin(caller.public)
            ctx = client_ssl(folder, caller, agent)
            url = agent.card.offers[0].url
            host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])

            async def handshake() -> None:
                _reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
                writer.close()
                await writer.wait_closed()

            columns: dict[str, dict[str, float]] = {"HTTP/1.1": {}, "HTTP/2": {}, "HTTP/3": {}}
            columns["HTTP/1.1"]["handshakes"] = await rate(handshake, seconds)
            baseline = await bare(ctx, agent, caller, seconds)
            for name, http2 in (("HTTP/1.1", False), ("HTTP/2", True)):
                columns[name].update(await per_version(name, tcp_client(ctx, http2), url, seconds))
            if http3:
                h3 = quic_client(agent, caller, host, port)
                columns["HTTP/3"]["handshakes"] = await rate(quic_handshake(h3), seconds)
                columns["HTTP/3"].update(await per_version("HTTP/3", h3, url, seconds))
            print_table(columns, baseline, http3)


def tcp_client(ctx: ssl.SSLContext, http2: bool) -> Callable[[], httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=16 if not http2 else 1)
    return lambda: httpx.AsyncClient(verify=ctx, http2=http2, trust_env=False, limits=limits)


def quic_client(
    agent: Agent, caller: Identity, host: str, port: int
) -> Callable[[], httpx.AsyncClient]:
    def make() -> httpx.AsyncClient:
        transport = Http3Transport(
            host, port, certificate_chain=[self_signed_certificate(caller)],
            private_key=caller.signing_key,
            server_certificate=self_signed_certificate(agent.identity).public_bytes(
                serialization.Encoding.DER),
        )  # fmt: skip
        return httpx.AsyncClient(transport=transport, trust_env=False)

    return make


def quic_handshake(make: Callable[[], httpx.AsyncClient]) -> Callable[[], Awaitable[None]]:
    async def handshake() -> None:
        async with make() as http:
            transport = http._transport
            assert isinstance(transport, Http3Transport)
            await transport.connect()

    return handshake


def print_table(columns: dict[str, dict[str, float]], baseline: float, http3: bool) -> None:
    names = list(columns) if http3 else ["HTTP/1.1", "HTTP/2"]
    print(f"{'':34}" + "".join(f"{n:>10}" for n in names))
    for row in ROWS:
        cells = "".join(
            f"{columns[n][row]:10.0f}" if row in columns[n] else f"{'-':>10}" for n in names
        )
        print(f"{LABELS[row]:34}{cells}")
    print(f"{'  baseline, bare asyncio TLS server':34}{baseline:10.0f}")
    if not http3:
        print("HTTP/3: not measured (aioquic is not installed: the `http3` extra)")


async def bare(ctx: ssl.SSLContext, agent: Agent, caller: Identity, seconds: float) -> float:
    """Handshakes/s against a bare asyncio server with the same certificates (no HTTP)."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with key_files(agent.identity, [self_signed_certificate(agent.identity)]) as (cert, key):
        server_ctx.load_cert_chain(cert, key)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(cadata=pem([self_signed_certificate(caller)]).decode())

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]

    async def handshake() -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        writer.close()
        await writer.wait_closed()

    try:
        return await rate(handshake, seconds)
    finally:
        server.close()


async def per_version(
    name: str, client: Callable[[], httpx.AsyncClient], url: str, seconds: float
) -> dict[str, float]:
    errors: list[str] = []

    async def counted(action: Callable[[], Awaitable[None]]) -> None:
        # A transport error under load is counted and shown, never hidden or fatal.
        try:
            await action()
        except httpx.TransportError as exc:
            errors.append(type(exc).__name__)

    async def fresh_once() -> None:
        async with client() as http:
            answer = await http.post(url, content=BODY, headers=HEADERS)
            assert answer.status_code == 200, answer.text

    async def fresh() -> None:
        await counted(fresh_once)

    async with client() as http:

        async def call_once() -> None:
            answer = await http.post(url, content=BODY, headers=HEADERS)
            assert answer.status_code == 200 and answer.http_version == name, answer.http_version

        async def call() -> None:
            await counted(call_once)

        one = await rate(call, seconds)
        many = await concurrent_rate(call, seconds, 16)
    connect = await rate(fresh, seconds)
    if errors:
        print(f"{name:8} transport errors: {len(errors)} ({', '.join(sorted(set(errors)))})")
    return {"connect": connect, "one": one, "many": many}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    asyncio.run(bench(args.seconds))


if __name__ == "__main__":
    main()
