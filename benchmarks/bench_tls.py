"""TLS binding benchmark: mutual TLS 1.3 handshakes/s and A2A requests/s, HTTP/1.1 vs HTTP/2.

Run: ``uv run python benchmarks/bench_tls.py [--seconds 2.0]``

One process, one event loop: a Sealwire agent serves A2A over HTTPS on
loopback (hypercorn) and an external client (an ``httpx`` client holding a
pinned client certificate, as a2a-sdk would) calls it, so every figure
includes both ends' work on the same cores.

* handshakes/s: complete mutual TLS 1.3 handshakes (Ed25519 certificates on
  both sides), bare ``asyncio`` connections closed right after;
* new connection + one ``SendMessage``/s, per HTTP version (a handshake, ALPN,
  one JSON-RPC call);
* requests/s over kept-alive connections, one at a time and 16 in flight,
  per HTTP version (``SendMessage`` answered by a reply message).

HTTP/3 is not measured: the binding does not serve it (see the README, "Status").
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

from sealwire.agent import Agent
from sealwire.agent._tasks import TaskContext
from sealwire.identity import Identity
from sealwire_tls import key_files, pem, self_signed_certificate
from sealwire_tls.testing import export_client_files, tls_agent

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


async def bench(seconds: float) -> None:
    caller = Identity.generate()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "allowed.pem").write_bytes(pem([self_signed_certificate(caller)]))
        agent = tls_agent("bench", options={"client_certificates": [str(folder / "allowed.pem")]})
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

            print(f"mutual TLS 1.3 handshakes/s:           {await rate(handshake, seconds):8.0f}")
            baseline = await bare(ctx, agent, caller, seconds)
            print(f"  baseline, bare asyncio TLS server:     {baseline:8.0f}")
            for name, http2 in (("HTTP/1.1", False), ("HTTP/2", True)):
                await per_version(name, http2, ctx, url, seconds)
            print("HTTP/3: not measured (not served: no client-certificate API in aioquic)")


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
    name: str, http2: bool, ctx: ssl.SSLContext, url: str, seconds: float
) -> None:
    errors: list[str] = []

    async def counted(action: Callable[[], Awaitable[None]]) -> None:
        # A transport error under load is counted and shown, never hidden or fatal.
        try:
            await action()
        except httpx.TransportError as exc:
            errors.append(type(exc).__name__)

    async def fresh_once() -> None:
        async with httpx.AsyncClient(verify=ctx, http2=http2, trust_env=False) as http:
            answer = await http.post(url, content=BODY, headers=HEADERS)
            assert answer.status_code == 200, answer.text

    async def fresh() -> None:
        await counted(fresh_once)

    limits = httpx.Limits(max_connections=16 if not http2 else 1)
    async with httpx.AsyncClient(verify=ctx, http2=http2, trust_env=False, limits=limits) as http:

        async def call_once() -> None:
            answer = await http.post(url, content=BODY, headers=HEADERS)
            assert answer.status_code == 200 and answer.http_version == name, answer.http_version

        async def call() -> None:
            await counted(call_once)

        one = await rate(call, seconds)
        many = await concurrent_rate(call, seconds, 16)
    connect = await rate(fresh, seconds)
    print(f"{name:8} new connection + call/s:      {connect:8.0f}")
    print(f"{name:8} requests/s, 1 in flight:      {one:8.0f}")
    print(f"{name:8} requests/s, 16 in flight:     {many:8.0f}")
    if errors:
        print(f"{name:8} transport errors: {len(errors)} ({', '.join(sorted(set(errors)))})")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    asyncio.run(bench(args.seconds))


if __name__ == "__main__":
    main()
