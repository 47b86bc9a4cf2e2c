"""Relay benchmark: enqueue and fetch throughput and latency, SQLite and NATS JetStream.

Run: ``uv run python benchmarks/bench_relay.py [--messages N] [--size BYTES]
[--concurrency C] [--backends sqlite,nats] [--stream [--signal]]``.

``--stream`` measures mailbox traffic one way instead (see :func:`stream_main`):
client -> relay -> client, sent, delivered and acknowledged, over the relay
stream and over HTTP, beside a bare ``websockets`` echo floor measured in the
same run; with ``--signal`` also sealed and opened with Signal, the sessions in
memory and then in encrypted SQLite files (see :class:`SignalPair`). Beside each
figure, the CPU per message of the clients' process (sender and recipient, with
Signal's work) and of the relay's.

For each backend, in one run: a relay served by uvicorn on loopback in this
process; one sender enqueues N sealed messages of ``size`` bytes one after
the other (latency per send), then C senders enqueue N more concurrently
(throughput); the recipient then drains its mailbox with ``fetch(limit=100)``
+ ``ack`` (latency per fetch, messages per second). The NATS relay uses a
``nats-server -js`` started here on a free loopback port with a temporary
store (``nats-server`` must be installed: ``scripts/install-servers.sh``);
beside the NATS relay's figures, the floor of a bare nats-py JetStream
publish + ack on the same server is measured in the same run.
Client and relay share one process and one event loop, so the figures include
both sides of HTTP and are a floor for a remote relay, not a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import websockets

from sealwire.identity import Identity
from sealwire.relay import Delivery, RelayClient
from sealwire.store import SqliteStore, StoreKey
from sealwire.testing.ports import free_port
from sealwire_relay import RelayConfig, RelayLimits, running_relay

FETCH_BATCH = 100


@contextmanager
def nats_server(store: Path) -> Iterator[str]:
    binary = shutil.which("nats-server")
    if binary is None:
        sys.exit("nats-server is missing: run scripts/install-servers.sh (or --backends sqlite)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.02)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    p50, p95, p99 = cuts[49], cuts[94], cuts[98]
    return f"p50 {p50 * 1e3:7.2f} ms  p95 {p95 * 1e3:7.2f} ms  p99 {p99 * 1e3:7.2f} ms"


async def bench_backend(
    config: RelayConfig, n: int, size: int, concurrency: int
) -> dict[str, float]:
    """The relay's figures on ``config``'s backend, printed and returned by name."""
    payload = os.urandom(size)
    async with running_relay(config) as relay:
        recipient = RelayClient(relay.url, Identity.generate())
        senders = [RelayClient(relay.url, Identity.generate()) for _ in range(concurrency)]
        await asyncio.gather(recipient.fetch(limit=1), *(s.fetch(limit=1) for s in senders))
        target = recipient.agent_id

        latencies = []
        start = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            await senders[0].send(target, f"seq-{i}", payload)
            latencies.append(time.perf_counter() - t)
        sequential = n / (time.perf_counter() - start)
        print(f"  enqueue, 1 sender   {sequential:8.0f} msg/s  {percentiles(latencies)}")

        async def burst(k: int, sender: RelayClient) -> None:
            for i in range(k, n, concurrency):
                await sender.send(target, f"par-{i}", payload)

        start = time.perf_counter()
        await asyncio.gather(*(burst(k, s) for k, s in enumerate(senders)))
        parallel = n / (time.perf_counter() - start)
        print(f"  enqueue, {concurrency:2d} senders {parallel:8.0f} msg/s")

        fetch_latencies, drained = [], 0
        start = time.perf_counter()
        while True:
            t = time.perf_counter()
            batch = await recipient.fetch(limit=FETCH_BATCH)
            fetch_latencies.append(time.perf_counter() - t)
            if not batch:
                break
            await recipient.ack(batch)
            drained += len(batch)
        rate = drained / (time.perf_counter() - start)
        timing = percentiles(fetch_latencies)
        print(f"  fetch+ack (x{FETCH_BATCH})   {rate:8.0f} msg/s  fetch {timing}")
        assert drained == 2 * n, f"drained {drained} of {2 * n}"
        for client in (recipient, *senders):
            await client.close()
    return {
        "enqueue, 1 sender": sequential,
        f"enqueue, {concurrency} senders": parallel,
        f"fetch+ack (x{FETCH_BATCH})": rate,
    }


# -- one-way mailbox traffic: the stream, HTTP, and a bare WebSocket floor -------------

# Sends a stream client keeps in flight (pipelined; they share frames and commits).
STREAM_IN_FLIGHT = 1024
# Message sizes of the one-way runs (and of the floor).
STREAM_SIZES = (1024, 16 * 1024)
# Messages of a one-way run unless --messages says otherwise: a run of the stream and
# of the floor then lasts about a second, not a few milliseconds.
STREAM_MESSAGES = 20_000
# Runs of each one-way figure; the median is printed.
STREAM_RUNS = 3
# Messages of the HTTP fetch run (one request per fetch and per ack: about 40 times
# slower than the stream).
HTTP_MESSAGES = 2_000
# Where the Signal rows keep sessions and opened frames (the binding's and the
# mailbox router's namespaces).
SESSIONS, INBOX = "signal.sessions", "mailbox.inbox"

ECHO_SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def main():
    async with serve(echo, "127.0.0.1", int(sys.argv[1]), max_size=None, compression=None):
        await asyncio.Future()

asyncio.run(main())
"""


def _wait_http(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v1/info", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            sys.exit("the relay process ended")
        time.sleep(0.05)
    sys.exit("the relay did not start")


def _wait_tcp(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    sys.exit("the echo server did not start")


@contextmanager
def relay_process(
    tmp: Path, n: int, *, max_message_bytes: int = 256 * 1024
) -> Iterator[tuple[str, int]]:
    """``python -m sealwire_relay`` on SQLite in a process of its own, no rate limit,
    room for ``n`` messages per mailbox many times over; its URL and pid."""
    port = free_port()
    config = tmp / "relay.toml"
    config.write_text(
        "[relay]\n"
        f"port = {port}\n"
        f'identity = "{tmp / "relay.key"}"\n'
        'backend = "sqlite"\n'
        f'[relay.sqlite]\npath = "{tmp / "relay.sqlite3"}"\n'
        f"[relay.limits]\nrate_per_second = 1e9\nrate_burst = 1000000000\n"
        f"max_mailbox_depth = {20 * n}\nmax_message_bytes = {max_message_bytes}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealwire_relay", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url, proc)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def echo_server() -> Iterator[tuple[str, int]]:
    """A bare ``websockets`` echo server in a process of its own; its URL and pid."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, str(port)])
    try:
        _wait_tcp(port)
        yield f"ws://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def echo_floor(size: int, n: int) -> float:
    """Messages/s of a bare ``websockets`` echo between two processes: ``n`` messages
    of ``size`` bytes sent back to back while their echoes are read."""
    with echo_server() as (url, _):
        payload = os.urandom(size)
        async with websockets.connect(url, max_size=None, compression=None) as ws:

            async def read() -> None:
                for _ in range(n):
                    await ws.recv()

            start = time.perf_counter()
            reader = asyncio.create_task(read())
            for _ in range(n):
                await ws.send(payload)
            await reader
            return n / (time.perf_counter() - start)


async def round_trip_floor(size: int, n: int, in_flight: int) -> float:
    """CPU microseconds (both processes) per round trip of a bare ``websockets`` echo
    between two processes: ``n`` messages of ``size`` bytes, ``in_flight`` at once on
    one connection, each sent when an earlier one's echo came back. One hop out and
    back on this stack with no work on either side: the floor of a request over a
    socket and its answer."""
    with echo_server() as (url, pid):
        payload = os.urandom(size)
        async with websockets.connect(url, max_size=None, compression=None) as ws:
            echoes: asyncio.Queue[None] = asyncio.Queue()

            async def read() -> None:
                async for _ in ws:
                    echoes.put_nowait(None)

            reader = asyncio.create_task(read())
            cpu, server = time.process_time(), process_cpu(pid)
            for _ in range(in_flight):
                await ws.send(payload)
            for _ in range(n - in_flight):
                await echoes.get()
                await ws.send(payload)
            for _ in range(in_flight):
                await echoes.get()
            used = time.process_time() - cpu + process_cpu(pid) - server
            reader.cancel()
            return used / n * 1e6


class SignalPair:
    """Alice seals to Bob with the Signal envelope core (PQXDH then the Double
    Ratchet, sessions kept in memory as an in-memory agent store would).

    With ``files`` (a folder), each agent keeps its session in an encrypted
    SQLite file (WAL, synchronous=FULL) as the Signal binding and the mailbox
    router do: Alice commits her session before the envelope leaves; Bob
    commits his session and the opened frame in one transaction before the
    frame is handed on, and deletes the kept frame once it was (one commit
    each, none grouped).
    """

    def __init__(self, files: Path | None = None) -> None:
        from bench_signal import _ours_agent

        from sealwire_signal import (
            Envelope,
            accept_session,
            encode_session,
            open_envelope,
            seal_frame,
            start_session,
        )

        self._encode = encode_session
        self._stores: tuple[SqliteStore, SqliteStore] | None = None
        if files is not None:
            self._stores = (
                SqliteStore.open(files / "alice.sqlite3", StoreKey.generate()),
                SqliteStore.open(files / "bob.sqlite3", StoreKey.generate()),
            )

        self._seal, self._open, self._decode = seal_frame, open_envelope, Envelope.from_bytes
        rng = os.urandom
        alice, bob = _ours_agent(pq=True), _ours_agent(pq=True)
        verified = bob["bundle"].verify(bob["signing"].public_key())
        self.a = start_session(local_id="a", peer_id="b", identity=alice["ik"], peer=verified,
                               rng=rng)  # fmt: skip
        self.a, env = seal_frame(self.a, b"hello", negotiation=b"n" * 80, rng=rng)
        self.b, _ = accept_session(
            local_id="b", envelope=Envelope.from_bytes(env.to_bytes()), identity=bob["ik"],
            signed_prekey=bob["spk"], one_time_prekey=None, kem_prekey=bob["kem"], now=0.0,
            rng=rng,
        )  # fmt: skip

    def seal(self, frame: bytes) -> bytes:
        self.a, env = self._seal(self.a, frame, negotiation=b"n" * 80, rng=os.urandom)
        if self._stores is not None:
            self._stores[0].put(SESSIONS, "b/current", self._encode(self.a))
        return bytes(env.to_bytes())

    def open(self, message_id: str, raw: bytes) -> bytes:
        self.b, frame = self._open(self.b, self._decode(raw), now=0.0, rng=os.urandom)
        if self._stores is not None:
            with self._stores[1].transaction() as tx:
                tx.put(SESSIONS, "a/current", self._encode(self.b))
                tx.put(INBOX, message_id, frame)
        return bytes(frame)

    def handed_on(self, message_id: str) -> None:
        if self._stores is not None:
            self._stores[1].delete(INBOX, message_id)

    def close(self) -> None:
        for store in self._stores or ():
            store.close()


async def one_way(
    url: str, size: int, n: int, *, stream: bool, in_flight: int, pair: SignalPair | None = None
) -> float:
    """Messages/s from the first send to the last acknowledgement confirmed:
    one sender keeping ``in_flight`` sends going, one receiver acknowledging each
    delivery as it comes (as the mailbox router does); ``pair`` seals and opens."""
    sender = RelayClient(url, Identity.generate())
    receiver = RelayClient(url, Identity.generate())
    frame = os.urandom(size)
    try:
        await asyncio.gather(sender.fetch(limit=1), receiver.fetch(limit=1))  # authenticated
        inbox: Any
        if stream:
            assert await sender.open_stream() and await receiver.open_stream()
            inbox = receiver.subscribe()
        else:  # a client that holds no socket: an HTTP request per send, fetch and ack
            inbox = _polled(receiver)
        numbers = iter(range(n))

        async def send() -> None:  # one of ``in_flight`` senders, each one send at a time
            for i in numbers:
                payload = pair.seal(frame) if pair is not None else frame
                await sender.send(receiver.agent_id, f"m{i}", payload)

        async def receive() -> None:
            got = 0
            async for delivery in inbox:
                if pair is not None:
                    pair.open(delivery.message_id, delivery.envelope)
                    pair.handed_on(delivery.message_id)
                await receiver.ack([delivery])
                got += 1
                if got == n:
                    return

        start = time.perf_counter()
        receiving = asyncio.create_task(receive())
        await asyncio.gather(*(send() for _ in range(min(in_flight, n))))
        await receiving
        assert await receiver.fetch(limit=1) == []  # waits for the stream's acks
        elapsed = time.perf_counter() - start
        await inbox.aclose()
        return n / elapsed
    finally:
        await sender.close()
        await receiver.close()


async def _polled(client: RelayClient) -> AsyncIterator[Delivery]:
    """The mailbox read by fetching over HTTP (each delivery is acknowledged before
    the next fetch, so none comes twice)."""
    while True:
        batch = await client.fetch(limit=100)
        for delivery in batch:
            yield delivery
        if not batch:
            await asyncio.sleep(0.002)


async def stream_main(n: int, concurrency: int, signal: bool) -> None:
    """One-way mailbox traffic, relay on SQLite in its own process: each figure is the
    median of STREAM_RUNS runs (a fresh relay each), the floor's too."""
    print(f"one-way mailbox traffic, {n} messages ({min(n, HTTP_MESSAGES)} over HTTP), "
          f"relay on SQLite (its own process), median of {STREAM_RUNS} runs")  # fmt: skip
    print(f"{'':36s} {'msg/s':>8s}  {'of floor':>8s}  {'CPU us/msg: clients':>19s}  {'relay':>5s}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in STREAM_SIZES:
            floor = statistics.median([await echo_floor(size, n) for _ in range(STREAM_RUNS)])
            print(f"{size // 1024:2d} KiB  {'floor: websockets echo':28s} {floor:8.0f}")
            runs: list[tuple[str, bool, int, str | None]] = [
                (f"HTTP fetch, {concurrency} in flight", False, concurrency, None),
                (f"stream, {STREAM_IN_FLIGHT} in flight", True, STREAM_IN_FLIGHT, None),
            ]
            if signal:
                runs.append(("stream + Signal seal/open", True, STREAM_IN_FLIGHT, "memory"))
                runs.append(("  + sessions in SQLite files", True, STREAM_IN_FLIGHT, "files"))
            for k, (name, stream, in_flight, sessions) in enumerate(runs):
                count = n if stream else min(n, HTTP_MESSAGES)
                rates, clients, relays = [], [], []
                for run in range(STREAM_RUNS if stream else 1):
                    path = Path(tmp) / f"{size}-{k}-{run}"
                    path.mkdir()
                    pair = None
                    if sessions is not None:
                        pair = SignalPair(path if sessions == "files" else None)
                    try:
                        with relay_process(path, count) as (url, pid):
                            cpu, relay_cpu = time.process_time(), process_cpu(pid)
                            rates.append(await one_way(url, size, count, stream=stream,
                                                       in_flight=in_flight, pair=pair))  # fmt: skip
                            clients.append((time.process_time() - cpu) * 1e6 / count)
                            relays.append((process_cpu(pid) - relay_cpu) * 1e6 / count)
                    finally:
                        if pair is not None:
                            pair.close()
                rate = statistics.median(rates)
                print(f"{size // 1024:2d} KiB  {name:28s} {rate:8.0f}  {rate / floor:8.2f}  "
                      f"{statistics.median(clients):19.1f}  "
                      f"{statistics.median(relays):5.1f}")  # fmt: skip


async def bench_nats_floor(url: str, n: int, size: int, concurrency: int) -> None:
    """The floor under the NATS relay: bare nats-py JetStream publish + ack, no relay.

    Measured in the same run as the relay's figures, on the same server: one
    publisher one message at a time, then ``concurrency`` publishers at once
    (what the relay's enqueue does per message, minus HTTP and the relay).
    """
    import nats
    from nats.js.api import StorageType, StreamConfig

    payload = os.urandom(size)
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(
            StreamConfig(name="FLOOR", subjects=["floor.>"], storage=StorageType.FILE)
        )
        start = time.perf_counter()
        for i in range(n):
            await js.publish(f"floor.seq.{i}", payload)
        sequential = n / (time.perf_counter() - start)
        print(f"  floor: JetStream publish+ack, 1 at a time   {sequential:8.0f} msg/s")

        async def burst(k: int) -> None:
            for i in range(k, n, concurrency):
                await js.publish(f"floor.par.{i}", payload)

        start = time.perf_counter()
        await asyncio.gather(*(burst(k) for k in range(concurrency)))
        parallel = n / (time.perf_counter() - start)
        print(f"  floor: JetStream publish+ack, {concurrency:2d} in flight {parallel:8.0f} msg/s")
        await js.delete_stream("FLOOR")
    finally:
        await nc.close()


async def bench_nats_backend(
    url: str, n: int, size: int, concurrency: int, *, shared: bool = False
) -> None:
    """The NATS backend alone (no HTTP, no relay service): its JetStream round trips.

    ``concurrency`` senders enqueue ``n`` messages into one mailbox, then the
    mailbox is drained with fetch(100) + ack, as the relay would. ``shared``:
    the mode for several relay processes on one prefix (the server keeps the depth).
    """
    from sealwire_relay._nats_backend import NatsBackend

    payload = os.urandom(size)
    backend = NatsBackend([url], prefix="BENCHS" if shared else "BENCHB", shared=shared)
    label = "backend shared" if shared else "backend alone"
    await backend.start()
    try:

        async def burst(k: int) -> None:
            for i in range(k, n, concurrency):
                d = Delivery(message_id=f"b{i}", sender=f"s{k}", envelope=payload, received_at=0.0)
                await backend.enqueue("box", d, max_depth=10 * n)

        start = time.perf_counter()
        await asyncio.gather(*(burst(k) for k in range(concurrency)))
        rate = n / (time.perf_counter() - start)
        print(f"  {label}: enqueue, {concurrency:2d} senders  {rate:8.0f} msg/s")
        drained, start = 0, time.perf_counter()
        while batch := await backend.fetch("box", FETCH_BATCH):
            drained += await backend.ack("box", [(d.sender, d.message_id) for d in batch])
        rate = drained / (time.perf_counter() - start)
        print(f"  {label}: fetch+ack (x{FETCH_BATCH})   {rate:8.0f} msg/s")
        assert drained == n, f"drained {drained} of {n}"
    finally:
        await backend.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--messages", type=int, help=f"default 2000, or {STREAM_MESSAGES} with --stream"
    )
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--backends", default="sqlite,nats")
    parser.add_argument("--stream", action="store_true", help="one-way traffic (see above)")
    parser.add_argument("--signal", action="store_true", help="with --stream: Signal too")
    args = parser.parse_args()
    if args.stream:
        await stream_main(args.messages or STREAM_MESSAGES, args.concurrency, args.signal)
        return
    args.messages = args.messages or 2000
    limits = RelayLimits(
        rate_per_second=1e9, rate_burst=10**9, max_mailbox_depth=10 * args.messages
    )
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            print(f"{backend}: {args.messages} messages of {args.size} bytes")
            if backend == "nats":
                with nats_server(Path(tmp) / "nats") as url:
                    options: dict[str, object] = {"servers": [url], "prefix": "BENCH"}
                    config = RelayConfig(
                        port=free_port(),
                        identity_path=Path(tmp) / "id.key",
                        backend="nats",
                        backend_options=options,
                        limits=limits,
                    )
                    figures[backend] = await bench_backend(
                        config, args.messages, args.size, args.concurrency
                    )
                    await bench_nats_backend(url, args.messages, args.size, args.concurrency)
                    await bench_nats_backend(
                        url, args.messages, args.size, args.concurrency, shared=True
                    )
                    await bench_nats_floor(url, args.messages, args.size, args.concurrency)
            else:
                config = RelayConfig(
                    port=free_port(),
                    identity_path=Path(tmp) / "id.key",
                    backend=backend,
                    backend_options={"path": str(Path(tmp) / f"{backend}.sqlite3")},
                    limits=limits,
                )
                figures[backend] = await bench_backend(
                    config, args.messages, args.size, args.concurrency
                )
    if "sqlite" in figures and "nats" in figures:
        print("nats relay / sqlite relay (goal: at least 0.5 on every figure)")
        for name, sqlite in figures["sqlite"].items():
            print(f"  {name:22s} {figures['nats'][name] / sqlite:8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
