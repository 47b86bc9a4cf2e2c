"""Mailbox receive path: what handing an opened message on costs, before and after.

Run: ``uv run python benchmarks/bench_mailbox.py [--seconds S] [--requests N]``.

Measured in one process, in the same run:

* the baseline, the step the router used to take for every message after
  ``binding.open``: the opened message written as the stored JSON record
  (``kept_frame``) and parsed back with its sender's signed card verified
  again (``read_kept_frame``), for a real agent card offering the signal binding;
* the router now: the :class:`OpenedMessage` handed on as it is (the record is
  read back only after a restart), so that step is gone;
* for scale, end to end: requests a second from one agent to another over the
  signal mailbox binding through an in-process relay (SQLite backend), one at a
  time and ``--concurrency`` at once, and the process CPU per call of the latter
  (issue 14's goal: 1.2 ms);
* the relay's SQLite work in that concurrent phase: transactions and statements
  per message (the relay's figure that the machine's load does not blur), and
  the sends and acks one commit carries.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sealwire.agent import Agent, TaskContext
from sealwire.agent._kept_records import kept_frame, read_kept_frame
from sealwire.binding import OpenedMessage, PeerIdentity
from sealwire.identity import Identity
from sealwire.relay import RelayClient
from sealwire.store import MemoryStore
from sealwire.testing.ports import free_port
from sealwire_relay import RelayConfig, running_relay
from sealwire_relay._sqlite_backend import SqliteBackend

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
    requests: int, concurrency: int, counts: SqliteCounts | None = None
) -> tuple[float, float, float]:
    counts = counts or SqliteCounts()
    with tempfile.TemporaryDirectory() as tmp:
        config = RelayConfig(
            port=free_port(), identity_path=Path(tmp) / "relay.key", backend="sqlite",
            backend_options={"path": str(Path(tmp) / "relay.sqlite3")},
        )  # fmt: skip
        backend = CountingSqlite(Path(tmp) / "relay.sqlite3", counts)
        async with running_relay(config, backend=backend) as relay:
            ids = [Identity.generate(), Identity.generate()]
            clients = [RelayClient(relay.url, i) for i in ids]
            agents = [
                Agent(i, MemoryStore(), relay=c, relay_address=c.mailbox_address)
                for i, c in zip(ids, clients, strict=True)
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
                start, cpu = time.perf_counter(), time.process_time()
                counts.on = True
                for _ in range(requests // concurrency):
                    await asyncio.gather(
                        *(agents[0].send_message(peer, "many") for _ in range(concurrency))
                    )
                counts.on = False
                calls = requests // concurrency * concurrency
                parallel = calls / (time.perf_counter() - start)
                cpu_ms = (time.process_time() - cpu) * 1000 / calls
            finally:
                for agent in agents:
                    await agent.stop()
                for client in clients:
                    await client.close()
    return sequential, parallel, cpu_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    async def card_of_an_agent() -> OpenedMessage:
        identity = Identity.generate()
        with tempfile.TemporaryDirectory() as tmp:
            config = RelayConfig(
                port=free_port(), identity_path=Path(tmp) / "relay.key", backend="sqlite",
                backend_options={"path": str(Path(tmp) / "relay.sqlite3")},
            )  # fmt: skip
            async with running_relay(config) as relay, RelayClient(relay.url, identity) as client:
                agent = Agent(
                    identity, MemoryStore(), relay=client, relay_address=client.mailbox_address
                )
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


if __name__ == "__main__":
    main()
