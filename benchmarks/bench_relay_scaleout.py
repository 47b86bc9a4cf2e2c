"""Relay scale-out: mailbox stream throughput on SQLite, on NATS, and on two relay processes.

Run: ``uv run python benchmarks/bench_relay_scaleout.py [--pairs P] [--messages N] [--size B]``.

In one run, each relay in processes of its own (``python -m sealwire_relay``), a
``nats-server -js`` started here (``scripts/install-servers.sh`` installs it):

1. one relay on SQLite (the baseline);
2. one relay on NATS JetStream (``[relay.nats] shared = true``, as a scaled-out
   deployment runs it): its ratio to SQLite;
3. two relay processes on the same JetStream prefix: its ratio to one.

Each figure is ``P`` sender/receiver pairs at once, each pair sending ``N``
messages of ``B`` bytes one way over the relay stream (sent, delivered,
acknowledged; see ``bench_relay.one_way``); a pair talks through one relay,
and with two relays the pairs alternate between them. The pairs' clients run
in this process, so on a small machine they compete with the relays for the
CPU: the CPU count is printed beside the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench_relay import _wait_http, nats_server, one_way, process_cpu

from sealwire.testing.ports import free_port

IN_FLIGHT = 256
"""Sends each pair keeps going (the stream pipelines them)."""


@contextmanager
def relay(directory: Path, backend: str, options: str, messages: int) -> Iterator[str]:
    """``python -m sealwire_relay`` in a process of its own; its URL."""
    directory.mkdir()
    port = free_port()
    config = directory / "relay.toml"
    config.write_text(
        f'[relay]\nport = {port}\nidentity = "{directory / "relay.key"}"\n'
        f'backend = "{backend}"\n[relay.{backend}]\n{options}\n'
        f"[relay.limits]\nrate_per_second = 1e9\nrate_burst = 1000000000\n"
        f"max_mailbox_depth = {20 * messages}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealwire_relay", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _cpu_by_command() -> dict[str, float]:
    """CPU seconds used so far by this process (``clients``) and by each kind of its
    child processes (``relays``, ``nats-server``), from Linux ``/proc``."""
    used = {"clients": time.process_time(), "relays": 0.0, "nats-server": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command, _, rest = (entry / "stat").read_text().partition(") ")
        except OSError:  # gone meanwhile
            continue
        if int(rest.split()[1]) != os.getpid():
            continue
        kind = "nats-server" if command.endswith("(nats-server") else "relays"
        with contextlib.suppress(OSError):  # gone meanwhile
            used[kind] += process_cpu(int(entry.name))
    return used


async def throughput(urls: list[str], pairs: int, messages: int, size: int) -> float:
    """Messages/s of ``pairs`` one-way pairs at once, pair i through ``urls[i % len]``;
    prints the CPUs each kind of process kept busy meanwhile."""
    before, start = _cpu_by_command(), time.perf_counter()
    await asyncio.gather(
        *(
            one_way(urls[i % len(urls)], size, messages, stream=True, in_flight=IN_FLIGHT)
            for i in range(pairs)
        )
    )
    elapsed, after = time.perf_counter() - start, _cpu_by_command()
    busy = ", ".join(f"{kind} {(after[kind] - before[kind]) / elapsed:.2f}" for kind in after)
    print(f"  CPUs busy: {busy}")
    return pairs * messages / elapsed


async def main_async(pairs: int, messages: int, size: int) -> None:
    print(f"mailbox stream, {pairs} pairs x {messages} messages of {size} B, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        base = Path(tmp)
        sqlite_url = stack.enter_context(
            relay(base / "sqlite", "sqlite", f'path = "{base / "relay.sqlite3"}"', messages)
        )
        sqlite = await throughput([sqlite_url], pairs, messages, size)
        print(f"one relay, SQLite:                  {sqlite:8.0f} msg/s")
        nats = stack.enter_context(nats_server(base / "nats"))
        shared = f'servers = ["{nats}"]\nprefix = "BENCH"\nshared = true'
        first = stack.enter_context(relay(base / "nats-1", "nats", shared, messages))
        one = await throughput([first], pairs, messages, size)
        print(f"one relay, NATS JetStream:          {one:8.0f} msg/s  "
              f"{one / sqlite:5.2f} x SQLite (goal: at least 0.5)")  # fmt: skip
        second = stack.enter_context(relay(base / "nats-2", "nats", shared, messages))
        two = await throughput([first, second], pairs, messages, size)
        print(f"two relays, one JetStream:          {two:8.0f} msg/s  "
              f"{two / one:5.2f} x one relay (goal: 1.5 where the CPUs allow)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    asyncio.run(main_async(args.pairs, args.messages, args.size))


if __name__ == "__main__":
    main()
