"""Post-quantum TLS benchmark: X25519 vs X25519MLKEM768, handshakes/s and bytes per handshake.

Run, pinned to one core: ``taskset -c 0 uv run python benchmarks/tls_pq.py [--seconds 2.0]``

Both groups on the same stack (pyOpenSSL on the OpenSSL inside cryptography's
wheel, the ``post_quantum`` option's), the same agent certificates (Ed25519,
self-signed, client certificate required and verified against the pinned
anchor, as the TLS binding does), TLS 1.3, in the same run:

* **memory**: client and server connections handshaking over memory BIOs in
  one thread: the cost of the TLS handshake itself on both ends, nothing of
  sockets or the event loop. Bytes on the wire are the TLS records each way
  (TCP/IP headers not counted), the session tickets OpenSSL's server sends
  after the handshake included (pyOpenSSL cannot turn them off).
* **A2A call**: a new connection and one ``SendMessage`` to an agent (core's listener,
  the A2A app, the caller's certificate checked and pinned), an external
  ``httpx`` caller: the default stack against ``post_quantum = "require"``,
  HTTP/1.1 and HTTP/2 - what a call on a new connection costs both ends.
* **loopback**: the binding's own carrier (:class:`sealwire_tls._pq_stream.TlsStream`
  both ends, asyncio, loopback TCP): connect, handshake, close_notify, as
  each new connection of the binding pays it. The last row is the same on
  Python's ``ssl`` and asyncio's own TLS (what the binding runs without
  ``post_quantum``: the system's OpenSSL), taking its turn with the others.

Each group row offers only that group, both ends ("X25519": what a classical
peer pays; "X25519MLKEM768": the hybrid alone, ``post_quantum = "require"``);
the third row is a ``prefer`` client (key shares for both) against a
classical server: what calling a classical peer costs a PQ-enabled agent.
Rates are per second of this process's CPU time (``time.process_time``) spent
in each case's handshakes, the cases taking turns one handshake at a time (a
burst of load on the shared machine then falls on all of them alike); ratios
are against the X25519 row of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from sealwire.agent import TaskContext
from sealwire.identity import Identity
from sealwire_tls._certs import key_files, pem, self_signed_certificate
from sealwire_tls._pq import (
    CLIENT_KEY_SHARES,
    HYBRID_GROUP,
    PREFERRED_GROUPS,
    WHEEL_OPENSSL,
    PostQuantum,
    set_groups,
    tls_context,
)
from sealwire_tls._pq_client import PqNetworkBackend, PqTransport, connect_tls
from sealwire_tls._pq_stream import TlsStream
from sealwire_tls.testing import export_client_files, tls_agent

MAX_FLIGHTS = 16
"""Exchanges of one in-memory handshake before it is declared stuck (TLS 1.3: 3-4)."""

Case = tuple[str, Sequence[str], Sequence[str], int]  # name, client groups, server, key shares
CASES: tuple[Case, ...] = (
    ("X25519", ["X25519"], ["X25519"], 1),
    (HYBRID_GROUP, [HYBRID_GROUP], [HYBRID_GROUP], 1),
    ("prefer client, X25519 server", PREFERRED_GROUPS, ["X25519"], CLIENT_KEY_SHARES),
)


class Pair:
    """The server's and the client's contexts for one case (agent certificates, pinned)."""

    def __init__(self, case: Case) -> None:
        _name, client_groups, server_groups, shares = case
        server_id, client_id = Identity.generate(), Identity.generate()
        server_cert = self_signed_certificate(server_id)
        client_cert = self_signed_certificate(client_id)
        self.server = tls_context(
            server=True, mode=PostQuantum.PREFER, chain=[server_cert],
            key=server_id.signing_key, anchors=[client_cert.public_bytes(Encoding.DER)],
        )  # fmt: skip
        self.client = tls_context(
            server=False, mode=PostQuantum.PREFER, chain=[client_cert],
            key=client_id.signing_key, anchors=[server_cert.public_bytes(Encoding.DER)],
            alpn=("http/1.1",),
        )  # fmt: skip
        set_groups(self.server, server_groups)
        set_groups(self.client, client_groups, key_shares=shares)


class StdlibPair:
    """The classical stack the binding runs without ``post_quantum``: Python's ``ssl``
    (the system's OpenSSL), the same kind of certificates, pinned both ways."""

    def __init__(self) -> None:
        server_id, client_id = Identity.generate(), Identity.generate()
        server_cert = self_signed_certificate(server_id)
        client_cert = self_signed_certificate(client_id)
        self.server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.client.check_hostname = False
        for ctx, identity, mine, theirs in (
            (self.server, server_id, server_cert, client_cert),
            (self.client, client_id, client_cert, server_cert),
        ):
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
            ctx.load_verify_locations(cadata=theirs.public_bytes(Encoding.DER))
            with key_files(identity, [mine]) as (cert_file, key_file):
                ctx.load_cert_chain(cert_file, key_file)
        self.server.num_tickets = 0  # as the binding's server (resumption off)


def memory_handshake(pair: Pair) -> tuple[int, int, str]:
    """One handshake over memory BIOs: (bytes client->server, server->client, group)."""
    server = SSL.Connection(pair.server, None)
    server.set_accept_state()
    client = SSL.Connection(pair.client, None)
    client.set_connect_state()
    sent = [0, 0]
    for _ in range(MAX_FLIGHTS):
        moved = False
        for index, (source, sink) in enumerate(((client, server), (server, client))):
            with contextlib.suppress(SSL.WantReadError):
                source.do_handshake()
            try:
                data = source.bio_read(1 << 20)
            except SSL.WantReadError:
                continue
            sent[index] += len(data)
            sink.bio_write(data)
            moved = True
        if not moved:
            break
    # the client reads the tickets the server sent after its Finished
    with contextlib.suppress(SSL.WantReadError):
        client.recv(1)
    group = client.get_group_name() or "?"
    if group != server.get_group_name():
        raise RuntimeError("the two ends disagree on the group")
    return sent[0], sent[1], group


def memory_rates(pairs: Sequence[Pair], seconds: float) -> list[float]:
    """Handshakes per CPU second of each pair, one handshake of each in turn."""
    spent = [0.0] * len(pairs)
    count = 0
    while min(spent) < seconds:
        for index, pair in enumerate(pairs):
            start = time.process_time()
            memory_handshake(pair)
            spent[index] += time.process_time() - start
        count += 1
    return [count / s for s in spent]


async def loopback_rates(pairs: Sequence[Pair], stdlib: StdlibPair, seconds: float) -> list[float]:
    """The same over loopback TCP, both ends in this event loop, the pyOpenSSL pairs and
    then Python's ``ssl`` taking turns: the clock runs from connect to the server's end
    of the connection (it read the client's close)."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Queue[None] = asyncio.Queue()
    tasks: set[asyncio.Task[None]] = set()

    async def serve(stream: TlsStream) -> None:
        try:
            await stream.handshake()
            await stream.recv(1)  # the client's close_notify
        finally:
            stream.close()
            await stream.wait_closed()
            finished.put_nowait(None)

    def acceptor(pair: Pair) -> Callable[[], TlsStream]:
        def accept() -> TlsStream:
            connection = SSL.Connection(pair.server, None)
            connection.set_accept_state()
            return TlsStream(connection, lambda s: tasks.add(loop.create_task(serve(s))))

        return accept

    async def serve_stdlib(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()  # until the client's close
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
            finished.put_nowait(None)

    servers = [await loop.create_server(acceptor(p), "127.0.0.1", 0) for p in pairs]
    servers.append(await asyncio.start_server(serve_stdlib, "127.0.0.1", 0, ssl=stdlib.server))
    ports = [server.sockets[0].getsockname()[1] for server in servers]

    async def one(index: int) -> None:
        if index < len(pairs):
            stream = await connect_tls("127.0.0.1", ports[index], pairs[index].client, 10.0)
            stream.close()
            await stream.wait_closed()
        else:
            _reader, writer = await asyncio.open_connection(
                "127.0.0.1", ports[index], ssl=stdlib.client, server_hostname="127.0.0.1"
            )
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        await finished.get()

    spent = [0.0] * len(servers)
    count = 0
    try:
        while min(spent) < seconds:
            for index in range(len(servers)):
                start = time.process_time()
                await one(index)
                spent[index] += time.process_time() - start
            count += 1
        await asyncio.gather(*tasks)
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()
    return [count / s for s in spent]


BODY = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {
    "messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}}).encode()  # fmt: skip
HEADERS = {"Content-Type": "application/json", "A2A-Version": "1.0"}
CALL_KINDS = ("default stack (Python ssl)", 'post_quantum = "require"')


async def call_rates(seconds: float) -> dict[tuple[str, bool], float]:
    """New connection + one ``SendMessage`` per CPU second, agent and caller in this
    loop: an agent on the default stack and one with ``post_quantum = "require"``, an
    external httpx caller with a pinned client certificate (stdlib ``ssl``, or the
    binding's pyOpenSSL transport), HTTP/1.1 and HTTP/2, taking turns per call."""
    caller = Identity.generate()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "allowed.pem").write_bytes(pem([self_signed_certificate(caller)]))
        allowed = {"client_certificates": [str(folder / "allowed.pem")]}
        plain = tls_agent("classical", options=allowed)
        hybrid = tls_agent("pq", options={**allowed, "post_quantum": "require"})

        async def hello(task: TaskContext) -> None:
            await task.reply("hello")

        for agent in (plain, hybrid):
            agent.on_message(hello)
        async with plain, hybrid:
            for agent in (plain, hybrid):
                agent.trust.pin(caller.public)
            cert, key, server = export_client_files(
                caller, folder, self_signed_certificate(plain.identity)
            )
            std = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            std.check_hostname = False
            std.load_verify_locations(cafile=str(server))
            std.load_cert_chain(str(cert), str(key))
            anchor = self_signed_certificate(hybrid.identity).public_bytes(Encoding.DER)
            mine = [self_signed_certificate(caller)]

            def client(kind: str, http2: bool) -> httpx.AsyncClient:
                if kind == CALL_KINDS[0]:
                    return httpx.AsyncClient(verify=std, http2=http2, trust_env=False)
                context = tls_context(
                    server=False, mode=PostQuantum.REQUIRE, chain=mine, key=caller.signing_key,
                    anchors=[anchor], alpn=("h2", "http/1.1") if http2 else ("http/1.1",),
                )  # fmt: skip
                backend = PqNetworkBackend(context, lambda _info: None)
                return httpx.AsyncClient(
                    transport=PqTransport(backend, http2=http2), trust_env=False
                )

            urls = {
                CALL_KINDS[0]: plain.card.offers[0].url,
                CALL_KINDS[1]: hybrid.card.offers[0].url,
            }
            cases = [(kind, http2) for http2 in (False, True) for kind in CALL_KINDS]
            spent = dict.fromkeys(cases, 0.0)
            count = 0
            while min(spent.values()) < seconds:
                for kind, http2 in cases:
                    start = time.process_time()
                    async with client(kind, http2) as http:
                        answer = await http.post(urls[kind], content=BODY, headers=HEADERS)
                    if answer.status_code != 200:
                        raise RuntimeError(f"{kind}: HTTP {answer.status_code}")
                    spent[(kind, http2)] += time.process_time() - start
                count += 1
    return {case: count / cost for case, cost in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per figure, all rounds")
    args = parser.parse_args()
    pairs = [Pair(case) for case in CASES]
    wire = [memory_handshake(pair) for pair in pairs]
    memory = memory_rates(pairs, args.seconds)
    loopback = asyncio.run(loopback_rates(pairs, StdlibPair(), args.seconds))
    print(f"TLS 1.3 on pyOpenSSL, {WHEEL_OPENSSL}; Ed25519 certificates both ways")
    print(f"one handshake of each case in turn, {args.seconds:g} s of CPU per figure\n")
    header = (
        f"{'case':<30} {'group':<15} {'C->S B':>7} {'S->C B':>7} {'total':>6} {'x':>5}"
        f" {'mem hs/s':>9} {'x':>5} {'tcp hs/s':>9} {'x':>5}"
    )
    print(header)
    print("-" * len(header))
    base_bytes = sum(wire[0][:2])
    rows = zip(CASES, wire, memory, loopback[: len(CASES)], strict=True)
    for (name, *_), (up, down, group), mem, tcp in rows:
        total = up + down
        print(
            f"{name:<30} {group:<15} {up:>7} {down:>7} {total:>6} {total / base_bytes:>5.2f}"
            f" {mem:>9.0f} {mem / memory[0]:>5.2f} {tcp:>9.0f} {tcp / loopback[0]:>5.2f}"
        )

    rate = loopback[-1]
    print(
        f"{'Python ssl (binding default)':<30} {'(not reported)':<15} {'':>7} {'':>7} {'':>6}"
        f" {'':>5} {'':>9} {'':>5} {rate:>9.0f} {rate / loopback[0]:>5.2f}"
    )
    print(f"\nPython ssl links {ssl.OPENSSL_VERSION}: no ML-KEM group; its default key share")
    print("is X25519, and Python 3.11 cannot report the group.\n")
    calls = asyncio.run(call_rates(args.seconds))
    print(f"{'new connection + A2A call/s':<34} {'HTTP/1.1':>9} {'HTTP/2':>9}")
    for kind in CALL_KINDS:
        one, two = calls[(kind, False)], calls[(kind, True)]
        base_one, base_two = calls[(CALL_KINDS[0], False)], calls[(CALL_KINDS[0], True)]
        print(f"{kind:<34} {one:>9.0f} {two:>9.0f}   x {one / base_one:.2f} / {two / base_two:.2f}")


if __name__ == "__main__":
    main()
