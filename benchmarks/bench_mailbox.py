"""Mailbox receive path: what handing an opened message on costs, before and after.

Run: ``uv run python benchmarks/bench_mailbox.py [--seconds S] [--requests N]``
(``--agents-only``: the last figure alone, the two agents' CPU per call;
``--sqlite-stores``: the end-to-end figures alone, both agents keeping their
state in encrypted SQLite files, every commit synced, as a real agent does).

Measured in one process, in the same run:

* the baseline, the step the router used to take for every message after
  ``binding.open``: the opened message written as the stored JSON record
  (``kept_frame``) and parsed back with its sender's signed card verified
  again (``read_kept_frame``), for a real agent card offering the signal binding;
* the router now: the :class:`OpenedMessage` handed on as it is (the record is
  read back only after a restart), so that step is gone;
* for scale, end to end: requests a second from one agent to another over the
  signal mailbox binding through an in-process relay (SQLite backend), one at a
  time and ``--concurrency`` at once (that many callers, each making its next call
  once its last is answered: :func:`in_flight`), and the process CPU per call of
  the latter (issue 14's goal: 1.2 ms);
* the relay's SQLite work in that concurrent phase: transactions and statements
  per message (the relay's figure that the machine's load does not blur), and
  the sends and acks one commit carries;
* the agents' side alone: the same calls through a relay kept in memory in the
  same process (:class:`MemoryRelay`: mailboxes and prekey pools as dicts, no
  sockets, no SQLite), so the CPU per call is the two agents' work only (seal,
  open, commit, route, tasks), ``--concurrency`` at once;
* as deployed: the same calls with the relay in a process of its own
  (``python -m sealwire_relay`` on SQLite), the two agents in this one: calls/s
  ``--concurrency`` at once, and the CPU per call of both processes;
* the floor beside it: the CPU of a bare ``websockets`` round trip between two
  processes (``--concurrency`` at once on one connection), and the floor of a
  call on this stack, the two agents alone plus the four round trips a call
  takes at least (its request and its answer each sent to the relay and
  delivered), with the deployed call's ratio to it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import tempfile
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench_relay import process_cpu, relay_process, round_trip_floor

from sealwire.agent import Agent, TaskContext
from sealwire.agent._kept_records import kept_frame, read_kept_frame
from sealwire.binding import OpenedMessage, PeerIdentity
from sealwire.identity import Identity, VerifiedCard
from sealwire.relay import Delivery, FetchedPrekeys, RelayClient, mailbox_address
from sealwire.store import MemoryStore, SqliteStore, StateStore, StoreKey
from sealwire.testing.ports import free_port
from sealwire_relay import RelayConfig, running_relay
from sealwire_relay._sqlite_backend import SqliteBackend

# Round trips over a socket a mailbox call takes at least: the request and its answer
# are each sent to the relay (send, result) and delivered (deliver, ack).
HOPS_PER_CALL = 4
FRAME = b'{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{}}' + b" " * 200


def rate(step: Callable[[], object], seconds: float) -> float:
    """Operations per second of ``step`` over about ``seconds`` (after a warm-up)."""
    for _ in range(20):
        step()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(20):
            step()
        count += 20
    return count / elapsed


async def in_flight(agent: Agent, peer: VerifiedCard, rounds: int, concurrency: int) -> None:
    """``rounds * concurrency`` calls from ``agent`` to ``peer``, ``concurrency`` in flight
    all along: each of ``concurrency`` callers makes its next call once its last is
    answered (waves of ``concurrency`` calls at once would drain between waves)."""

    async def caller() -> None:
        for _ in range(rounds):
            await agent.send_message(peer, "many")

    await asyncio.gather(*(caller() for _ in range(concurrency)))


async def _echo(task: TaskContext) -> None:
    await task.complete("ok")


class SqliteCounts:
    """The relay's SQLite statements, transactions, mailbox commits and their items,
    counted while :attr:`on`."""

    def __init__(self) -> None:
        self.on = False
        self.statements = self.transactions = self.commits = self.items = self.messages = 0

    def summary(self) -> str:
        n = max(self.messages, 1)
        return (
            f"relay SQLite per message: {self.transactions / n:.2f} transactions,"
            f" {self.statements / n:.2f} statements; {self.items / max(self.commits, 1):.2f}"
            " sends and acks per commit"
        )


class CountingSqlite(SqliteBackend):
    """The relay's SQLite backend, feeding a :class:`SqliteCounts`."""

    def __init__(self, path: Path, counts: SqliteCounts) -> None:
        super().__init__(path)
        self.counts = counts

    async def start(self) -> None:
        await super().start()
        assert self._db is not None
        self._db.set_trace_callback(self._trace)

    def _trace(self, sql: str) -> None:
        if self.counts.on:
            self.counts.statements += 1
            self.counts.transactions += sql.startswith("BEGIN")

    async def commit_mailbox_batch(self, acks, enqueues, *, max_depth):  # type: ignore[no-untyped-def]
        if self.counts.on:
            self.counts.commits += 1
            self.counts.items += len(acks) + len(enqueues)
            self.counts.messages += len(enqueues)
        return await super().commit_mailbox_batch(acks, enqueues, max_depth=max_depth)


async def end_to_end(
    requests: int,
    concurrency: int,
    counts: SqliteCounts | None = None,
    *,
    sqlite: bool = False,
    relay: tuple[str, int] | None = None,
) -> tuple[float, float, float]:
    """(calls/s one at a time, calls/s ``concurrency`` at once, CPU ms per call of the
    latter); ``sqlite``: both agents keep their state in encrypted SQLite files;
    ``relay``: the URL and pid of a relay in a process of its own (its CPU is counted
    too), else one runs in this process."""
    counts = counts or SqliteCounts()
    with tempfile.TemporaryDirectory() as tmp:

        def store(k: int) -> StateStore:
            if not sqlite:
                return MemoryStore()
            return SqliteStore.open(Path(tmp) / f"agent{k}.sqlite3", StoreKey.generate())

        async with contextlib.AsyncExitStack() as stack:
            relay_cpu: Callable[[], float]
            if relay is None:
                config = RelayConfig(
                    port=free_port(), identity_path=Path(tmp) / "relay.key", backend="sqlite",
                    backend_options={"path": str(Path(tmp) / "relay.sqlite3")},
                )  # fmt: skip
                backend = CountingSqlite(Path(tmp) / "relay.sqlite3", counts)
                running = await stack.enter_async_context(running_relay(config, backend=backend))
                url, relay_cpu = running.url, lambda: 0.0  # in this process's CPU already
            else:
                url, pid = relay
                relay_cpu = functools.partial(process_cpu, pid)
            ids = [Identity.generate(), Identity.generate()]
            clients = [RelayClient(url, i) for i in ids]
            agents = [
                Agent(i, store(k), relay=c)
                for k, (i, c) in enumerate(zip(ids, clients, strict=True))
            ]
            agents[1].on_message(_echo)
            try:
                for agent in agents:
                    await agent.start()
                peer = agents[0].peer(agents[1].card)
                await agents[0].send_message(peer, "warm up")
                start = time.perf_counter()
                for _ in range(requests):
                    await agents[0].send_message(peer, "one")
                sequential = requests / (time.perf_counter() - start)
                start, cpu = time.perf_counter(), time.process_time() + relay_cpu()
                counts.on = True
                await in_flight(agents[0], peer, requests // concurrency, concurrency)
                counts.on = False
                calls = requests // concurrency * concurrency
                parallel = calls / (time.perf_counter() - start)
                cpu_ms = (time.process_time() + relay_cpu() - cpu) * 1000 / calls
            finally:
                for agent in agents:
                    await agent.stop()
                    agent.store.close()
                for client in clients:
                    await client.close()
    return sequential, parallel, cpu_ms


class MemoryRelay:
    """The mailbox and prekey calls of a relay, in memory, for the agents of one process:
    what the agents' side costs without a relay's own work. Not a relay: it checks
    nothing and keeps nothing beyond the run."""

    URL = "https://memory.relay"

    def __init__(self, agent_id: str, world: dict[str, Any]) -> None:
        self.agent_id = agent_id
        self._world = world  # shared: mailboxes, bundles, pools
        world["mailboxes"].setdefault(agent_id, asyncio.Queue())

    @property
    def url(self) -> str:
        return self.URL

    @property
    def mailbox_address(self) -> str:
        return mailbox_address(self.URL, self.agent_id)

    def at(self, url: str) -> MemoryRelay:
        return self

    def signed_in_at(self, url: str) -> MemoryRelay:
        return self

    async def close(self) -> None:
        return None

    async def publish_prekeys(
        self, binding: str, bundle: bytes, one_time: Mapping[str, Mapping[str, bytes]]
    ) -> None:
        key = (self.agent_id, binding)
        self._world["bundles"][key] = bundle
        pools = self._world["pools"].setdefault(key, {})
        for pool, keys in one_time.items():
            pools.setdefault(pool, {}).update(keys)

    async def fetch_prekeys(self, agent_id: str, binding: str) -> FetchedPrekeys:
        key = (agent_id, binding)
        taken: dict[str, tuple[str, bytes] | None] = {}
        for pool, keys in self._world["pools"].get(key, {}).items():
            first = next(iter(keys), None)
            taken[pool] = None if first is None else (first, keys.pop(first))
        return FetchedPrekeys(self._world["bundles"][key], taken)

    async def count_prekeys(self, binding: str) -> Mapping[str, int]:
        pools = self._world["pools"].get((self.agent_id, binding), {})
        return {pool: len(keys) for pool, keys in pools.items()}

    async def publish_key_package(self, key_package_id: str, key_package: bytes) -> None:
        return None

    async def count_key_packages(self) -> int:
        return 1_000_000  # never asks for more

    async def publish_card(self, card: Mapping[str, Any]) -> None:
        return None

    async def send(self, recipient: str, message_id: str, envelope: bytes) -> None:
        agent_id = recipient.rsplit("/", 1)[-1]
        delivery = Delivery(
            message_id=message_id, sender=self.agent_id, envelope=envelope,
            received_at=time.time(),
        )  # fmt: skip
        self._world["mailboxes"][agent_id].put_nowait(delivery)

    async def fetch(self, *, limit: int = 100) -> list[Delivery]:
        return []

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        return None

    async def subscribe(self) -> AsyncGenerator[Delivery, None]:
        queue = self._world["mailboxes"][self.agent_id]
        while True:
            yield await queue.get()


async def agents_only(requests: int, concurrency: int) -> float:
    """CPU per call (ms), ``concurrency`` at once, through :class:`MemoryRelay`."""
    world: dict[str, Any] = {"mailboxes": {}, "bundles": {}, "pools": {}}
    ids = [Identity.generate(), Identity.generate()]
    relays = [MemoryRelay(i.agent_id, world) for i in ids]
    agents = [
        Agent(i, MemoryStore(), relay=r)  # type: ignore[arg-type]
        for i, r in zip(ids, relays, strict=True)
    ]
    agents[1].on_message(_echo)
    try:
        for agent in agents:
            await agent.start()
        peer = agents[0].peer(agents[1].card)
        await agents[0].send_message(peer, "warm up")
        cpu = time.process_time()
        await in_flight(agents[0], peer, requests // concurrency, concurrency)
        calls = requests // concurrency * concurrency
        return (time.process_time() - cpu) * 1000 / calls
    finally:
        for agent in agents:
            await agent.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--requests", type=int, default=1600)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--agents-only", action="store_true", help="measure only the agents' side (relay in memory)"
    )
    parser.add_argument(
        "--sqlite-stores",
        action="store_true",
        help="the end-to-end figures alone, both agents on encrypted SQLite files",
    )
    args = parser.parse_args()
    if args.sqlite_stores:
        sequential, parallel, cpu_ms = asyncio.run(
            end_to_end(args.requests, args.concurrency, sqlite=True)
        )
        print("both agents on encrypted SQLite files (each commit synced), over signal + relay:")
        print(f"  one at a time: {sequential:8.1f} calls/s")
        at_once = f"{args.concurrency} at once:"
        print(f"  {at_once:14} {parallel:8.1f} calls/s, CPU {cpu_ms:.2f} ms per call")
        return
    if args.agents_only:
        agents_ms = asyncio.run(agents_only(args.requests, args.concurrency))
        print(
            f"CPU per call, {args.concurrency} at once: {agents_ms:.2f} ms (the two agents alone)"
        )
        return

    async def card_of_an_agent() -> OpenedMessage:
        identity = Identity.generate()
        with tempfile.TemporaryDirectory() as tmp:
            config = RelayConfig(
                port=free_port(), identity_path=Path(tmp) / "relay.key", backend="sqlite",
                backend_options={"path": str(Path(tmp) / "relay.sqlite3")},
            )  # fmt: skip
            async with running_relay(config) as relay, RelayClient(relay.url, identity) as client:
                agent = Agent(identity, MemoryStore(), relay=client)
                card = await agent.start()
                await agent.stop()
        sender = PeerIdentity(agent_id=identity.agent_id, identity=card.identity, card=card)
        return OpenedMessage(sender=sender, frame=FRAME, message_id="m")

    opened = asyncio.run(card_of_an_agent())
    old = rate(lambda: read_kept_frame(kept_frame("signal", opened)), args.seconds)
    print(f"hand-on, before (JSON record + card verified again): {1e6 / old:8.1f} us/message")
    print("hand-on, now (OpenedMessage in memory):                 0.0 us/message")
    counts = SqliteCounts()
    sequential, parallel, cpu_ms = asyncio.run(end_to_end(args.requests, args.concurrency, counts))
    print(f"end to end over signal + relay, one at a time: {sequential:8.1f} requests/s")
    at_once = f"{args.concurrency} at once:"
    print(f"end to end over signal + relay, {at_once:13} {parallel:8.1f} requests/s")
    print(f"CPU per call, {at_once} {cpu_ms:.2f} ms (caller, relay and answerer in one process)")
    print(f"{at_once} {counts.summary()}")
    agents_ms = asyncio.run(agents_only(args.requests, args.concurrency))
    print(f"CPU per call, {at_once} {agents_ms:.2f} ms (the two agents alone: relay in memory)")
    with tempfile.TemporaryDirectory() as tmp, relay_process(Path(tmp), args.requests) as relay:
        _, parallel, cpu_ms = asyncio.run(end_to_end(args.requests, args.concurrency, relay=relay))
    print(
        f"relay in its own process (as deployed; {os.cpu_count()} CPUs), {at_once} "
        f"{parallel:8.1f} requests/s, CPU {cpu_ms:.2f} ms per call (both processes)"
    )
    hop_us = asyncio.run(round_trip_floor(1024, 4 * args.requests, args.concurrency))
    print(
        f"floor: a bare websockets round trip of 1 KiB between two processes, {at_once} "
        f"{hop_us:.0f} us CPU (both)"
    )
    floor_ms = agents_ms + HOPS_PER_CALL * hop_us / 1000
    print(
        f"floor of a call: the two agents alone + {HOPS_PER_CALL} such round trips = "
        f"{floor_ms:.2f} ms CPU; as deployed {cpu_ms / floor_ms:.1f}x of it"
    )


if __name__ == "__main__":
    main()
