"""Relay benchmark: enqueue and fetch throughput and latency, SQLite and NATS JetStream.

Run: ``uv run python benchmarks/bench_relay.py [--messages N] [--size BYTES]
[--concurrency C] [--backends sqlite,nats]``.

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sealwire.identity import Identity
from sealwire.relay import RelayClient
from sealwire_relay import RelayConfig, RelayLimits, running_relay

FETCH_BATCH = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


async def bench_backend(config: RelayConfig, n: int, size: int, concurrency: int) -> None:
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


async def bench_nats_backend(url: str, n: int, size: int, concurrency: int) -> None:
    """The NATS backend alone (no HTTP, no relay service): its JetStream round trips.

    ``concurrency`` senders enqueue ``n`` messages into one mailbox, then the
    mailbox is drained with fetch(100) + ack, as the relay would.
    """
    from sealwire.relay import Delivery
    from sealwire_relay._nats_backend import NatsBackend

    payload = os.urandom(size)
    backend = NatsBackend([url], prefix="BENCHB")
    await backend.start()
    try:

        async def burst(k: int) -> None:
            for i in range(k, n, concurrency):
                d = Delivery(message_id=f"b{i}", sender=f"s{k}", envelope=payload, received_at=0.0)
                await backend.enqueue("box", d, max_depth=10 * n)

        start = time.perf_counter()
        await asyncio.gather(*(burst(k) for k in range(concurrency)))
        rate = n / (time.perf_counter() - start)
        print(f"  backend alone: enqueue, {concurrency:2d} senders  {rate:8.0f} msg/s")
        drained, start = 0, time.perf_counter()
        while batch := await backend.fetch("box", FETCH_BATCH):
            drained += await backend.ack("box", [(d.sender, d.message_id) for d in batch])
        rate = drained / (time.perf_counter() - start)
        print(f"  backend alone: fetch+ack (x{FETCH_BATCH})   {rate:8.0f} msg/s")
        assert drained == n, f"drained {drained} of {n}"
    finally:
        await backend.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--backends", default="sqlite,nats")
    args = parser.parse_args()
    limits = RelayLimits(
        rate_per_second=1e9, rate_burst=10**9, max_mailbox_depth=10 * args.messages
    )
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
                    await bench_backend(config, args.messages, args.size, args.concurrency)
                    await bench_nats_backend(url, args.messages, args.size, args.concurrency)
                    await bench_nats_floor(url, args.messages, args.size, args.concurrency)
            else:
                config = RelayConfig(
                    port=free_port(),
                    identity_path=Path(tmp) / "id.key",
                    backend=backend,
                    backend_options={"path": str(Path(tmp) / f"{backend}.sqlite3")},
                    limits=limits,
                )
                await bench_backend(config, args.messages, args.size, args.concurrency)


if __name__ == "__main__":
    asyncio.run(main())
