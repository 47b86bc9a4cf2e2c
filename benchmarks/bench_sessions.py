"""Concurrent Noise sessions one agent holds per carrier (TCP, WebSocket, UDP), every call answered.

Run: ``uv run python benchmarks/bench_sessions.py [--counts 1000,10000] [--carriers tcp,ws,udp]``

For each carrier and count N, a fresh server agent runs in its own process
(Noise binding, in-memory store, a handler that completes at once) and this
process opens N sessions to it from one client agent (each its own socket and
Noise XX handshake, ``OPEN_CONCURRENCY`` at a time), then sends one
``SendMessage`` on every session (``CALL_CONCURRENCY`` at a time, or
``--in-flight``) and counts the answers (a call unanswered after
``CALL_TIMEOUT`` counts as lost). Printed per row: sessions opened and answered, the time to open
them, the calls/s of the answering round, and the server's memory per session:
its resident set (``VmRSS``) after the N sessions minus before them (after one
warm-up session), over N. Both processes raise their file-descriptor limit to
the hard limit (``resource.setrlimit``).

What limits the count is printed before a row that passes it: the descriptor
limit (one socket per session on each side; a count past it is not attempted),
and the server's own bounds, which refuse sessions past them by design:
``DEFAULT_MAX_CONNECTIONS`` (TCP and WebSocket connections a listener serves at
once, each may hold a frame in memory) and ``UDP_MAX_PEERS`` (remote addresses
a datagram server serves at once, a bound against forged source addresses),
1,024 each. Such a row is then measured with that bound raised to the count in
the server process (the listener's keyword default), marked ``raised``, so the
cost of 10,000 sessions is known for an operator who raises it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from sealwire.agent import Agent, RpcConnection, TaskContext
from sealwire.codec import Method
from sealwire.identity import Identity
from sealwire.model import Message, Part, Role, SendMessageRequest
from sealwire.plugins import load_registry
from sealwire.policy import Situation
from sealwire.store import MemoryStore
from sealwire.transport import DEFAULT_MAX_CONNECTIONS, UDP_MAX_PEERS
from sealwire_noise import plugin as noise_plugin

CARRIERS = ("tcp", "ws", "udp")
# Handshakes in flight at once: below the listen backlog (asyncio's default 100), so
# no connection waits in a full accept queue.
OPEN_CONCURRENCY = 64
# Calls in flight at once over all sessions: enough to keep both processes busy. Over
# UDP a burst of 512 overflows the server socket's receive buffer (Linux default
# 212,992 bytes: /proc/net/snmp RcvbufErrors grew by exactly the calls lost, 384 of
# 1,000), and a lost request datagram is never sent again: ``--in-flight 512`` shows it.
CALL_CONCURRENCY = 32
# Seconds a call may take before it counts as unanswered: far above a loaded round
# trip; over UDP a lost datagram is not sent again, and the client would otherwise
# wait for its endpoint's idle timeout (UDP_CLIENT_IDLE_SECONDS, 240 s).
CALL_TIMEOUT = 30.0
# Descriptors each process keeps for itself (stdio, the event loop, listeners, pipes).
RESERVED_FDS = 64
# Seconds the server process has to start and print its card.
SERVER_START_SECONDS = 60.0


def raise_fd_limit() -> int:
    """Raise this process's descriptor limit to its hard limit; the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def registry() -> Any:
    return load_registry(extra_plugins=[noise_plugin], load_entry_points=False)


# -- the server process ------------------------------------------------------------------


async def _complete(task: TaskContext) -> None:
    await task.complete("done")


def bound_of(carrier: str) -> tuple[str, int]:
    """The server's bound on sessions at once over ``carrier``: its name and value."""
    if carrier == "udp":
        return "UDP_MAX_PEERS", UDP_MAX_PEERS
    return "DEFAULT_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS


def raise_bound(carrier: str, value: int) -> None:
    """Raise the listener's bound in this (the server) process: the keyword default of
    the function the agent's transport serves with."""
    from sealwire.transport import _dial

    function, name = (
        (_dial.serve_datagram, "max_peers")
        if carrier == "udp"
        else (_dial.serve, "max_connections")
    )
    function.__kwdefaults__ = {**(function.__kwdefaults__ or {}), name: value}


async def serve(carrier: str, bound: int) -> None:
    if bound != bound_of(carrier)[1]:
        raise_bound(carrier, bound)
    agent = Agent(Identity.generate(), MemoryStore(), name="server",
                  listen=[f"{carrier}://127.0.0.1:0"], registry=registry())  # fmt: skip
    agent.on_message(_complete)
    async with agent:
        print(json.dumps(dict(agent.card.card)), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin


# -- the client side -------------------------------------------------------------------


def _message() -> SendMessageRequest:
    message = Message(message_id=uuid.uuid4().hex, role=Role.USER, parts=(Part(text="hi"),))
    return SendMessageRequest(message=message)


async def _bounded(jobs: Sequence[Any], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def run(job: Any) -> Any:
        async with gate:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs), return_exceptions=True)


async def measure(carrier: str, count: int, bound: int, in_flight: int) -> dict[str, Any]:
    """Open ``count`` sessions to a fresh server process and call once on each."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", carrier, "--bound", str(bound)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    conns: list[RpcConnection] = []
    client = Agent(Identity.generate(), MemoryStore(), name="client", registry=registry())
    try:
        assert proc.stdout is not None
        loop = asyncio.get_running_loop()
        line = await asyncio.wait_for(
            loop.run_in_executor(None, proc.stdout.readline), SERVER_START_SECONDS
        )
        async with client:
            peer = client.peer(json.loads(line))
            decision = client.explain(peer, Situation())

            async def open_one() -> RpcConnection:
                channel = await client._open_channel(peer, decision)
                conn = RpcConnection(channel, None)
                conn.start()
                conns.append(conn)
                return conn

            warm = await open_one()
            await warm.call(Method.SEND_MESSAGE, _message())
            before = rss_bytes(proc.pid)
            start = time.perf_counter()
            opened = await _bounded([open_one] * count, OPEN_CONCURRENCY)
            open_seconds = time.perf_counter() - start
            live = [c for c in opened if isinstance(c, RpcConnection)]
            failures = [c for c in opened if not isinstance(c, RpcConnection)]
            start = time.perf_counter()
            calls = [
                lambda c=c: asyncio.wait_for(c.call(Method.SEND_MESSAGE, _message()), CALL_TIMEOUT)
                for c in live
            ]
            answers = await _bounded(calls, in_flight)
            call_seconds = time.perf_counter() - start
            after = rss_bytes(proc.pid)
            answered = sum(1 for a in answers if not isinstance(a, BaseException))
            failures += [a for a in answers if isinstance(a, BaseException)]
            for conn in conns:
                with contextlib.suppress(Exception):
                    await conn.close()
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    first_failure = f"{type(failures[0]).__name__}: {failures[0]}" if failures else ""
    return {
        "opened": len(live), "answered": answered, "open_s": open_seconds,
        "calls_per_s": answered / call_seconds if call_seconds else 0.0,
        "per_session": (after - before) / max(1, len(live)), "before": before, "after": after,
        "failure": first_failure[:160],
    }  # fmt: skip


async def main_async(carriers: Sequence[str], counts: Sequence[int], in_flight: int) -> None:
    fds = raise_fd_limit()
    print(f"descriptor limit {fds} (raised to the hard limit), {os.cpu_count()} cores, "
          f"{in_flight} calls in flight, {CALL_TIMEOUT:.0f} s per call")  # fmt: skip
    print(f"{'carrier':8} {'sessions':>9} {'opened':>7} {'answered':>9} {'open s':>7} "
          f"{'calls/s':>8} {'KiB/session':>12}  server RSS before -> after")  # fmt: skip
    for carrier in carriers:
        for count in counts:
            if count + RESERVED_FDS > fds:
                print(f"{carrier:8} {count:>9}  not reachable: {count} sessions need {count} "
                      f"descriptors on each side, the limit is {fds} (ulimit -Hn)")  # fmt: skip
                continue
            name, bound = bound_of(carrier)
            sessions = count + 1  # and the warm-up session
            if sessions > bound:
                print(f"{carrier:8} {count:>9}  not reachable by default: the server serves "
                      f"at most {name} = {bound} at once; measured with it raised to "
                      f"{sessions}:")  # fmt: skip
                bound = sessions
            row = await measure(carrier, count, bound, in_flight)
            print(
                f"{carrier + (' raised' if bound != bound_of(carrier)[1] else ''):8} "
                f"{count:>9} {row['opened']:>7} {row['answered']:>9} "
                f"{row['open_s']:>7.1f} {row['calls_per_s']:>8.0f} "
                f"{row['per_session'] / 1024:>12.1f}  "
                f"{row['before'] / 2**20:.0f} MiB -> {row['after'] / 2**20:.0f} MiB"
            )
            if row["failure"]:
                print(f"{'':8} first failure: {row['failure']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--carriers", default=",".join(CARRIERS))
    parser.add_argument("--counts", default="1000,10000")
    parser.add_argument("--in-flight", type=int, default=CALL_CONCURRENCY)
    parser.add_argument("--serve", choices=CARRIERS, help=argparse.SUPPRESS)
    parser.add_argument("--bound", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        raise_fd_limit()
        asyncio.run(serve(args.serve, args.bound or bound_of(args.serve)[1]))
        return
    carriers = [c for c in args.carriers.split(",") if c]
    counts = [int(n) for n in args.counts.split(",") if n]
    asyncio.run(main_async(carriers, counts, args.in_flight))


if __name__ == "__main__":
    main()
