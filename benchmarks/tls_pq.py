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
* **loopback**: the binding's own carrier (:class:`sealwire_tls._pq.TlsStream`
  both ends, asyncio, loopback TCP): connect, handshake, close_notify, as
  each new connection of the binding pays it.

Each group row offers only that group, both ends ("X25519": what a classical
peer pays; "X25519MLKEM768": the hybrid alone, ``post_quantum = "require"``);
the third row is a ``prefer`` client (key shares for both) against a
classical server: what calling a classical peer costs a PQ-enabled agent.
Rates are per second of this process's CPU time (``time.process_time``), the
groups alternated in :data:`ROUNDS` slices and the best slice of each kept;
ratios are against the X25519 row of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from sealwire.identity import Identity
from sealwire_tls._certs import self_signed_certificate
from sealwire_tls._pq import (
    CLIENT_KEY_SHARES,
    HYBRID_GROUP,
    PREFERRED_GROUPS,
    WHEEL_OPENSSL,
    PostQuantum,
    TlsStream,
    set_groups,
    tls_context,
)
from sealwire_tls._pq_client import connect_tls

ROUNDS = 5
"""Alternating slices per figure: enough for one quiet slice on a shared machine."""
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
            try:
                source.do_handshake()
            except SSL.WantReadError:
                pass
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
    try:
        client.recv(1)
    except SSL.WantReadError:
        pass
    group = client.get_group_name() or "?"
    if group != server.get_group_name():
        raise RuntimeError("the two ends disagree on the group")
    return sent[0], sent[1], group


def memory_rate(pair: Pair, seconds: float) -> float:
    count = 0
    start = time.process_time()
    while time.process_time() - start < seconds:
        memory_handshake(pair)
        count += 1
    return count / (time.process_time() - start)


async def loopback_rate(pair: Pair, seconds: float) -> float:
    loop = asyncio.get_running_loop()
    done: list[asyncio.Task[None]] = []

    async def serve(stream: TlsStream) -> None:
        try:
            await stream.handshake()
            await stream.recv(1)  # the client's close_notify
        finally:
            stream.close()

    def accept() -> TlsStream:
        connection = SSL.Connection(pair.server, None)
        connection.set_accept_state()
        return TlsStream(connection, lambda s: done.append(loop.create_task(serve(s))))

    server = await loop.create_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    count = 0
    start = time.process_time()
    try:
        while time.process_time() - start < seconds:
            stream = await connect_tls("127.0.0.1", port, pair.client, 10.0)
            stream.close()
            await stream.wait_closed()
            count += 1
        elapsed = time.process_time() - start
        await asyncio.gather(*done)
    finally:
        server.close()
        await server.wait_closed()
    return count / elapsed


def best(
    pairs: Sequence[Pair], measure: Callable[[Pair, float], float], seconds: float
) -> list[float]:
    rates = [0.0] * len(pairs)
    for _ in range(ROUNDS):
        for index, pair in enumerate(pairs):
            rates[index] = max(rates[index], measure(pair, seconds / ROUNDS))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per figure, all rounds")
    args = parser.parse_args()
    pairs = [Pair(case) for case in CASES]
    wire = [memory_handshake(pair) for pair in pairs]
    memory = best(pairs, memory_rate, args.seconds)
    loopback = best(pairs, lambda p, s: asyncio.run(loopback_rate(p, s)), args.seconds)
    print(f"TLS 1.3 on pyOpenSSL, {WHEEL_OPENSSL}; Ed25519 certificates both ways")
    print(f"best of {ROUNDS} slices, {args.seconds:g} s of CPU per figure\n")
    header = (
        f"{'case':<30} {'group':<15} {'C->S B':>7} {'S->C B':>7} {'total':>6} {'x':>5}"
        f" {'mem hs/s':>9} {'x':>5} {'tcp hs/s':>9} {'x':>5}"
    )
    print(header)
    print("-" * len(header))
    base_bytes = sum(wire[0][:2])
    for (name, *_), (up, down, group), mem, tcp in zip(CASES, wire, memory, loopback, strict=True):
        total = up + down
        print(
            f"{name:<30} {group:<15} {up:>7} {down:>7} {total:>6} {total / base_bytes:>5.2f}"
            f" {mem:>9.0f} {mem / memory[0]:>5.2f} {tcp:>9.0f} {tcp / loopback[0]:>5.2f}"
        )


if __name__ == "__main__":
    main()
