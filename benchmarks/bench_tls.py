"""TLS binding benchmark: mutual TLS 1.3 handshakes/s and A2A requests/s, HTTP/1.1, /2 and /3.

Run, pinned to one core: ``taskset -c 0 uv run python benchmarks/bench_tls.py [--seconds 2.0]``

One process, one event loop: a Sealwire agent serves A2A over HTTPS on
loopback (core's listener, on h11 and h2) and an external client (an ``httpx`` client holding a
pinned client certificate, as a2a-sdk would) calls it, so every figure
includes both ends' work. Rates are per second of this process's CPU time
(``time.process_time``, user and system, so the loopback's kernel work
counts), not wall time: on a shared machine other processes then do not
steal slices from one figure and not its peer.

The peer, measured in the same run and alternated with the new-connection
figures (best round of each kept): the stdlib ``ssl`` with the same Ed25519
certificates, a bare ``asyncio`` server that requires and verifies the
client certificate (defaults otherwise, so two session tickets) and echoes
one line; each call is a new connection, its handshake, one line there and
back. It is also shown with tickets off, as our server now runs.

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
import contextlib
import json
import ssl
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization

from sealwire.agent import Agent
from sealwire.agent._task_run import TaskContext
from sealwire.identity import Identity
from sealwire.transport.http import serve_http
from sealwire_tls import key_files, pem, self_signed_certificate
from sealwire_tls.testing import export_client_files, free_port, tls_agent

try:
    import uvicorn
except ImportError:  # only the server-stack comparison needs it
    uvicorn = None  # type: ignore[assignment]

try:
    import hypercorn.asyncio
    import hypercorn.config
except ImportError:  # a dev dependency: only the server-stack comparison needs it
    hypercorn = None  # type: ignore[assignment]

try:
    from sealwire_tls.http3 import Http3Transport
except ImportError:  # no aioquic: HTTP/3 is not measured
    Http3Transport = None  # type: ignore[assignment,misc]

BODY = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {
    "messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}}).encode()  # fmt: skip
HEADERS = {"Content-Type": "application/json", "A2A-Version": "1.0"}


async def reply(task: TaskContext) -> None:
    await task.reply("hello")


ROUNDS = 3
"""Alternating rounds of the new-connection figures and their peer (best of each kept)."""


async def rate(action: Callable[[], Awaitable[object]], seconds: float) -> float:
    """Completed ``action`` calls per CPU second over about ``seconds`` of CPU."""
    await action()
    calls, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        await action()
        calls += 1
    return calls / (time.process_time() - start)


async def concurrent_rate(
    action: Callable[[], Awaitable[object]], seconds: float, width: int
) -> float:
    """Calls per CPU second with ``width`` calls kept in flight."""
    await action()
    done = 0
    start = time.process_time()

    async def worker() -> None:
        nonlocal done
        while time.process_time() - start < seconds:
            await action()
            done += 1

    await asyncio.gather(*(worker() for _ in range(width)))
    return done / (time.process_time() - start)


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
            clients = {"HTTP/1.1": tcp_client(ctx, False), "HTTP/2": tcp_client(ctx, True)}
            if http3:
                clients["HTTP/3"] = quic_client(agent, caller, host, port)
            peers = {"tickets": 0.0, "no tickets": 0.0}
            async with (
                bare(ctx, agent, caller, tickets=True) as with_tickets,
                bare(ctx, agent, caller, tickets=False) as without,
            ):
                for _ in range(ROUNDS):
                    peers["tickets"] = max(peers["tickets"], await rate(with_tickets, seconds))
                    peers["no tickets"] = max(peers["no tickets"], await rate(without, seconds))
                    for name, make in clients.items():
                        got = await rate(fresh_call(name, make, url), seconds)
                        columns[name]["connect"] = max(columns[name].get("connect", 0.0), got)
            columns["HTTP/1.1"]["handshakes"] = await rate(handshake, seconds)
            if http3:
                columns["HTTP/3"]["handshakes"] = await rate(
                    quic_handshake(clients["HTTP/3"]), seconds
                )
            for name, make in clients.items():
                columns[name].update(await per_version(name, make, url, seconds))
            print_table(columns, peers, http3)


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


def print_table(columns: dict[str, dict[str, float]], peers: dict[str, float], http3: bool) -> None:
    names = list(columns) if http3 else ["HTTP/1.1", "HTTP/2"]
    print(f"{'':34}" + "".join(f"{n:>10}" for n in names))
    for row in ROWS:
        cells = "".join(
            f"{columns[n][row]:10.0f}" if row in columns[n] else f"{'-':>10}" for n in names
        )
        print(f"{LABELS[row]:34}{cells}")
    peer = peers["tickets"]
    ratios = "".join(f"{columns[n]['connect'] / peer:10.2f}" for n in names)
    print(f"{'  new connection + call / peer':34}{ratios}")
    print(f"peer: stdlib ssl, mutual TLS 1.3 handshake + echo: {peer:.0f} /s"
          f" (with its tickets off: {peers['no tickets']:.0f} /s)")  # fmt: skip
    print("rates per CPU second of this process (client and server together)")
    if not http3:
        print("HTTP/3: not measured (aioquic is not installed: the `http3` extra)")


@contextlib.asynccontextmanager
async def bare(
    ctx: ssl.SSLContext, agent: Agent, caller: Identity, *, tickets: bool
) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """The peer: a bare asyncio TLS server with the same certificates, echoing one line;
    yields one call (new connection, handshake, a line there and back)."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with key_files(agent.identity, [self_signed_certificate(agent.identity)]) as (cert, key):
        server_ctx.load_cert_chain(cert, key)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(cadata=pem([self_signed_certificate(caller)]).decode())
    if not tickets:
        server_ctx.num_tickets = 0

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            writer.write(await reader.readline())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]

    async def call() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        writer.write(b"ping\n")
        assert await reader.readline() == b"ping\n"
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()

    try:
        yield call
    finally:
        server.close()
        await server.wait_closed()


def fresh_call(
    name: str, client: Callable[[], httpx.AsyncClient], url: str
) -> Callable[[], Awaitable[None]]:
    """One call on a new client (so a new connection and handshake)."""

    async def call() -> None:
        async with client() as http:
            answer = await http.post(url, content=BODY, headers=HEADERS)
            assert answer.status_code == 200 and answer.http_version == name, answer.text

    return call


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

    async with client() as http:

        async def call_once() -> None:
            answer = await http.post(url, content=BODY, headers=HEADERS)
            assert answer.status_code == 200 and answer.http_version == name, answer.http_version

        async def call() -> None:
            await counted(call_once)

        one = await rate(call, seconds)
        many = await concurrent_rate(call, seconds, 16)
    if errors:
        print(f"{name:8} transport errors: {len(errors)} ({', '.join(sorted(set(errors)))})")
    return {"one": one, "many": many}


class ServerThread:
    """A server on an event loop of its own, in a thread whose CPU time is measured."""

    def __init__(self, start: Callable[[], contextlib.AbstractAsyncContextManager[str]]) -> None:
        self._start = start
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.url = ""

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with self._start() as url:
            self.url = url
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(STARTUP_SECONDS):
            raise RuntimeError("the server thread did not start")
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STARTUP_SECONDS)

    def cpu(self) -> float:
        assert self._thread.ident is not None
        return time.clock_gettime(time.pthread_getcpuclockid(self._thread.ident))


STARTUP_SECONDS = 30.0
"""Bound on a server thread's start and stop."""


async def server_ms_once(
    server: ServerThread, call: Callable[[], Awaitable[None]], seconds: float
) -> tuple[float, float]:
    """(server thread, client thread) CPU milliseconds per call, over about ``seconds``
    of the client's (this thread's) CPU."""
    await call()
    calls, cpu, start = 0, server.cpu(), time.thread_time()
    while time.thread_time() - start < seconds:
        await call()
        calls += 1
    client = time.thread_time() - start
    return (server.cpu() - cpu) / calls * 1e3, client / calls * 1e3


async def trivial_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app answering every POST with a fixed JSON-RPC result: the server stack alone."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b'{"jsonrpc":"2.0","id":1,"result":{}}'})


def _server_context(identity: Identity, certificate: Any, allowed: Path) -> ssl.SSLContext:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with key_files(identity, [certificate]) as (cert_file, key_file):
        server_ctx.load_cert_chain(cert_file, key_file)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(cafile=str(allowed))
    return server_ctx


def server_side(seconds: float) -> None:
    """Every server up at once, each in its thread; ``ROUNDS`` alternating rounds over
    them all, the least CPU per call of each kept."""
    caller, agent_identity = Identity.generate(), Identity.generate()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as servers:
        folder = Path(tmp)
        allowed = folder / "allowed.pem"
        allowed.write_bytes(pem([self_signed_certificate(caller)]))
        server_cert = self_signed_certificate(agent_identity)
        cert, key, server_pem = export_client_files(caller, folder, server_cert)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False
        ctx.load_verify_locations(cafile=str(server_pem))
        ctx.load_cert_chain(str(cert), str(key))

        def the_agent(
            resumption: bool,
        ) -> Callable[[], contextlib.AbstractAsyncContextManager[str]]:
            @contextlib.asynccontextmanager
            async def start() -> AsyncIterator[str]:
                options = {"client_certificates": [str(allowed)], "resumption": resumption}
                agent = tls_agent("bench", options=options, identity=agent_identity)
                agent.on_message(reply)
                async with agent:
                    agent.trust.pin(caller.public)
                    yield agent.card.offers[0].url

            return start

        def echo(tickets: int) -> Callable[[], contextlib.AbstractAsyncContextManager[str]]:
            server_ctx = _server_context(agent_identity, server_cert, allowed)
            server_ctx.num_tickets = tickets

            @contextlib.asynccontextmanager
            async def start() -> AsyncIterator[str]:
                async def answer(
                    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                ) -> None:
                    with contextlib.suppress(OSError, ssl.SSLError):
                        writer.write(await reader.readline())
                        await writer.drain()
                    writer.close()

                listening = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_ctx)
                yield str(listening.sockets[0].getsockname()[1])
                listening.close()

            return start

        plain_ctx = _server_context(agent_identity, server_cert, allowed)
        plain_ctx.num_tickets = 0
        plain_ctx.set_alpn_protocols(["h2", "http/1.1"])

        @contextlib.asynccontextmanager
        async def core_listener() -> AsyncIterator[str]:
            listener = await serve_http(trivial_app, "https://127.0.0.1:0", ssl=plain_ctx)
            yield listener.url + "/"
            await listener.close()

        agent = servers.enter_context(ServerThread(the_agent(False)))
        resuming = servers.enter_context(ServerThread(the_agent(True)))
        peer = servers.enter_context(ServerThread(echo(2)))
        quiet = servers.enter_context(ServerThread(echo(0)))
        plain = servers.enter_context(ServerThread(core_listener))
        cases: dict[str, tuple[ServerThread, Callable[[], Awaitable[None]]]] = {
            "agent (core listener + A2A app), HTTP/1.1": (
                agent, fresh_call("HTTP/1.1", tcp_client(ctx, False), agent.url)),
            "agent (core listener + A2A app), HTTP/2": (
                agent, fresh_call("HTTP/2", tcp_client(ctx, True), agent.url)),
            "agent, resumption on (1 ticket), HTTP/1.1": (
                resuming, fresh_call("HTTP/1.1", tcp_client(ctx, False), resuming.url)),
            "stdlib echo server (2 tickets)": (peer, echo_call(ctx, int(peer.url))),
            "stdlib, no tickets": (quiet, echo_call(ctx, int(quiet.url))),
            "core listener (h11, h2), trivial app, HTTP/1.1": (
                plain, fresh_call("HTTP/1.1", tcp_client(ctx, False), plain.url)),
            "core listener (h11, h2), trivial app, HTTP/2": (
                plain, fresh_call("HTTP/2", tcp_client(ctx, True), plain.url)),
        }  # fmt: skip
        if hypercorn is not None:
            hc = servers.enter_context(
                ServerThread(lambda: hypercorn_server(agent_identity, server_cert, allowed))
            )
            cases["hypercorn, trivial app, HTTP/1.1"] = (
                hc,
                fresh_call("HTTP/1.1", tcp_client(ctx, False), hc.url),
            )
            cases["hypercorn, trivial app, HTTP/2"] = (
                hc, fresh_call("HTTP/2", tcp_client(ctx, True), hc.url))  # fmt: skip
        if uvicorn is not None:
            uv = servers.enter_context(
                ServerThread(lambda: uvicorn_server(agent_identity, server_cert, allowed))
            )
            cases["uvicorn (h11), trivial app, HTTP/1.1"] = (
                uv,
                fresh_call("HTTP/1.1", tcp_client(ctx, False), uv.url),
            )

        async def measure() -> dict[str, tuple[float, float]]:
            best = dict.fromkeys(cases, (float("inf"), float("inf")))
            for _ in range(ROUNDS):
                for label, (server, call) in cases.items():
                    got = await server_ms_once(server, call, seconds / ROUNDS)
                    best[label] = min(best[label], got)  # the round the server spent least
            return best

        rows = asyncio.run(measure())
    reference = rows["stdlib echo server (2 tickets)"][0]
    print("CPU per new connection + one call, server thread (and the client's, same round)")
    for label, (ms, client) in rows.items():
        print(
            f"  {label:42} server {ms:6.2f} ms   peer / this {reference / ms:4.2f}"
            f"   (client {client:5.2f} ms)"
        )


def echo_call(ctx: ssl.SSLContext, port: int) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        writer.write(b"ping\n")
        assert await reader.readline() == b"ping\n"
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()

    return call


@contextlib.asynccontextmanager
async def uvicorn_server(identity: Identity, certificate: Any, allowed: Path) -> AsyncIterator[str]:
    """uvicorn (h11) serving the trivial app, client certificates required, no tickets."""
    assert uvicorn is not None
    port = free_port()
    with key_files(identity, [certificate]) as (cert_file, key_file):
        config = uvicorn.Config(
            trivial_app, host="127.0.0.1", port=port, ssl_certfile=cert_file,
            ssl_keyfile=key_file, ssl_cert_reqs=ssl.CERT_REQUIRED, ssl_ca_certs=str(allowed),
            log_level="error", http="h11", lifespan="off",
        )  # fmt: skip
        config.load()
    assert config.ssl is not None
    config.ssl.num_tickets = 0
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield f"https://127.0.0.1:{port}/"
    server.should_exit = True
    await task


@contextlib.asynccontextmanager
async def hypercorn_server(
    identity: Identity, certificate: Any, allowed: Path
) -> AsyncIterator[str]:
    """hypercorn (public ``serve``) serving the trivial app, client certificates
    required, no tickets: the ASGI server core's listener replaced."""
    assert hypercorn is not None

    class NoTickets(hypercorn.config.Config):
        def create_ssl_context(self) -> ssl.SSLContext | None:
            context = super().create_ssl_context()
            if context is not None:
                context.num_tickets = 0
            return context

    port = free_port()
    stop = asyncio.Event()
    with key_files(identity, [certificate]) as (cert_file, key_file):
        config = NoTickets()
        config.bind = [f"127.0.0.1:{port}"]
        config.certfile, config.keyfile, config.ca_certs = cert_file, key_file, str(allowed)
        config.verify_mode = ssl.CERT_REQUIRED
        config.accesslog = config.errorlog = None
        context = config.create_ssl_context()  # reads the files while they exist
    config.create_ssl_context = lambda: context  # type: ignore[method-assign]
    task = asyncio.create_task(
        hypercorn.asyncio.serve(trivial_app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    )
    await wait_listening(port)
    yield f"https://127.0.0.1:{port}/"
    stop.set()
    await task


async def wait_listening(port: int) -> None:
    for _ in range(500):
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        writer.close()
        return
    raise TimeoutError(f"nothing listens on port {port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument(
        "--part", choices=("both", "server"), default="both",
        help="both: client and server in one process (the issue's figure); server: server CPU",
    )  # fmt: skip
    args = parser.parse_args()
    if args.part == "both":
        asyncio.run(bench(args.seconds))
        print()
    server_side(args.seconds)


if __name__ == "__main__":
    main()
