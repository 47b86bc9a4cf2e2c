"""Group requests benchmark: ``send_to_group`` and every answer, N = 10 to 1000 members.

Run: ``uv run python benchmarks/bench_group_requests.py [--sizes 10,100,1000] [--repeat R]
[--fanout-messages K]``.

Everything in one process on one event loop: a real relay (SQLite file, HTTP and
WebSocket on loopback) and N agents (in-memory stores, MLS binding), each
answering with a completed task. Setup (not timed): one agent creates the
group and adds the others in one commit; every member joins from the Welcome.

For each N, the median over ``--repeat`` runs of one ``send_to_group``: the
request posted once to the log, each of the N-1 members opening it, handling
it and sending its answer to the requester's mailbox, and the requester
opening all N-1 answers (ms, and ms per member). Beside it, the baseline
measured in the same run: N-1 bare mailbox sends and fetches of the same relay
from one client (the floor a per-member answer pays in relay round trips).

Fan-out (for the group of 100 if measured, else the largest): K messages
posted to the log, the time until every member has processed every one:
messages/s delivered to every member, and process CPU per delivered copy; the
messages posted by one member, then by every member in turn (each member's
secret tree then holds a ratchet per sender: what a busy group costs), after a
round of one message each, not timed (each member's first message: its card
looked up by the others, its leaf's secrets derived). Then the same fan-out as
deployed, the relay in a process of its own (``python -m sealwire_relay`` on
SQLite): the members' CPU per delivered copy (this process) and the relay's,
apart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench_relay import process_cpu, relay_process

from sealwire.agent import Agent, TaskContext, agent_message
from sealwire.codec import A2A_VERSION, Frame, Response, encode_frame
from sealwire.identity import Identity
from sealwire.relay import RelayClient, RelayUnavailable
from sealwire.store import MemoryStore
from sealwire.testing.ports import free_port
from sealwire_mls.agents import agent_key_package
from sealwire_mls.group import Group
from sealwire_mls.welcome import MLSMessage
from sealwire_relay import RelayConfig, RelayLimits, running_relay

SIZES = (10, 100, 1_000)
START_ATTEMPTS = 3
# Agents started at once: a thousand connecting together overrun the listen backlog.
START_BATCH = 20
# Large enough for a group of 1000 agents with two WebSockets each, at full speed.
# A commit adding a hundred agents carries their cards, and a Welcome the whole tree:
# at a thousand members both exceed the default message size.
LIMITS = RelayLimits(rate_per_second=1e9, rate_burst=10**9, max_message_bytes=8 * 1024 * 1024)
# Members added per commit: the whole group in one, since every member processes every
# later commit (a hundred per commit makes the setup of N = 1,000 take half an hour).
ADD_BATCH = 1_000


async def _agent(url: str, name: str, stack: contextlib.AsyncExitStack) -> Agent:
    """A started agent; started again (a fresh one) when the relay fails it passingly
    (under a thousand clients, a kept-alive connection the server closed)."""
    for attempt in range(1, START_ATTEMPTS + 1):
        identity = Identity.generate()
        relay = RelayClient(url, identity)
        stack.push_async_callback(relay.close)
        agent = Agent(identity, MemoryStore(), name=name, relay=relay)

        async def handler(task: TaskContext) -> None:
            await task.complete("ok")

        agent.on_message(handler)
        try:
            await agent.start()
        except RelayUnavailable:
            with contextlib.suppress(Exception):  # what started of it is dropped
                await agent.stop()
            if attempt == START_ATTEMPTS:
                raise
            continue
        stack.push_async_callback(agent.stop)
        return agent
    raise AssertionError("unreachable")


async def _wait(predicate: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


async def _group(url: str, n: int, stack: contextlib.AsyncExitStack) -> tuple[bytes, list[Agent]]:
    agents: list[Agent] = []
    for start in range(0, n, START_BATCH):
        batch = range(start, min(n, start + START_BATCH))
        agents += await asyncio.gather(*(_agent(url, f"a{i}", stack) for i in batch))
    group = await agents[0].create_group()
    for start in range(1, n, ADD_BATCH):
        await agents[0].add_to_group(group, [a.card for a in agents[start : start + ADD_BATCH]])
    await _wait(lambda: all(group in a.groups() for a in agents), "the joins", 120 + 2 * n)
    return group, agents


async def _baseline_ms(url: str, n: int) -> float:
    """N-1 mailbox sends to one agent, then its fetches and acks (batched): the relay
    round trips a request's answers cannot do without."""
    async with (
        RelayClient(url, Identity.generate()) as sender,
        RelayClient(url, Identity.generate()) as receiver,
    ):
        await receiver.fetch(limit=1)
        await sender.fetch(limit=1)  # both authenticated before timing
        start = time.perf_counter()
        for _ in range(n - 1):  # one kept-alive connection, as each answerer has its own
            await sender.send(receiver.agent_id, uuid.uuid4().hex, b"x" * 600)
        got = 0
        while got < n - 1:
            batch = await receiver.fetch(limit=500)
            await receiver.ack(batch)
            got += len(batch)
        return (time.perf_counter() - start) * 1000


async def _request_ms(asker: Agent, group: bytes, n: int) -> float:
    start = time.perf_counter()
    replies = await asker.send_to_group(group, "status?", timeout=120)
    elapsed = (time.perf_counter() - start) * 1000
    errors = [r for r in replies if r.error is not None]
    if len(replies) != n - 1 or errors:
        raise RuntimeError(f"{len(errors)} of {len(replies)} replies are errors: {errors[:1]}")
    return elapsed


def _mls_open_us(frame: bytes, k: int) -> float:
    """The floor of a delivered copy: CPU µs for one member to open (process) one of
    ``k`` messages of ``frame``'s size, the MLS engine alone, no relay, no agent."""
    now = int(time.time())
    a, b = (agent_key_package(Identity.generate(), now=now) for _ in range(2))
    sender = Group.create(
        1, uuid.uuid4().bytes, a.key_package.leaf_node, encryption_priv=a.encryption_priv,
        signature_priv=a.signature_priv, random=os.urandom,
    )  # fmt: skip
    _, welcome = sender.commit(os.urandom, add=[b.key_package], now=now)
    sender.merge_pending_commit()
    assert welcome is not None
    reader = Group.join(
        MLSMessage.from_bytes(welcome).body, b.key_package, init_priv=b.init_priv,
        encryption_priv=b.encryption_priv, signature_priv=b.signature_priv,
    )  # fmt: skip
    sealed = [sender.encrypt(frame, os.urandom) for _ in range(k)]
    cpu = time.process_time()
    for message in sealed:
        reader.process(message)
    return (time.process_time() - cpu) * 1e6 / k


async def _fanout(
    group: bytes, agents: list[Agent], k: int, *, senders: int = 1
) -> tuple[float, float]:
    """K messages posted to the log by the first ``senders`` members in turn; (messages/s
    to every member, CPU ms per copy)."""
    bindings = [a._groups.binding(group) for a in agents[:senders]]  # type: ignore[union-attr]
    # A response frame: every member opens it, and none answers (only requests are).
    note = Response(id="fan-out", result=agent_message("x" * 200))
    frame = encode_frame(Frame(service_parameters={"A2A-Version": A2A_VERSION}, message=note))
    cpu, start = time.process_time(), time.perf_counter()
    last = 0
    for i in range(k):
        last, _epoch = await bindings[i % senders].post(group, frame)
    await _wait(
        lambda: all(a._groups._position(group) >= last for a in agents),  # type: ignore[union-attr]
        "the fan-out",
        120,
    )
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    readers = len(agents) - 1  # every member but the message's sender
    copies = k * readers
    return copies / elapsed / readers, used * 1000 / copies


async def main_async(sizes: list[int], repeat: int, fanout: int) -> None:
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        config = RelayConfig(
            port=free_port(), identity_path=Path(tmp) / "relay.key", backend="sqlite",
            backend_options={"path": str(Path(tmp) / "relay.sqlite3")}, limits=LIMITS,
        )  # fmt: skip
        async with running_relay(config) as relay:
            print(f"{'N':>6} {'setup s':>8} {'request ms':>11} {'ms/N':>7} "
                  f"{'baseline ms':>12} {'base ms/N':>10}")  # fmt: skip
            fanout_group: tuple[bytes, list[Agent]] | None = None
            async with contextlib.AsyncExitStack() as keep:
                for n in sizes:
                    stack = contextlib.AsyncExitStack()
                    setup = time.perf_counter()
                    group, agents = await _group(relay.url, n, stack)
                    setup = time.perf_counter() - setup
                    await _request_ms(agents[0], group, n)  # warm-up: cards, tokens
                    runs = [await _request_ms(agents[0], group, n) for _ in range(repeat)]
                    ms = statistics.median(runs)
                    base = await _baseline_ms(relay.url, n)
                    print(f"{n:>6} {setup:>8.1f} {ms:>11.1f} {ms / n:>7.2f} "
                          f"{base:>12.1f} {base / n:>10.2f}", flush=True)  # fmt: skip
                    if n == 100 or (fanout_group is None and n == max(sizes)):
                        fanout_group = (group, agents)
                        keep.push_async_callback(stack.aclose)
                    else:
                        await stack.aclose()
                if fanout_group is not None and fanout:
                    group, agents = fanout_group
                    floor = _mls_open_us(b"x" * 400, 200)
                    for senders in (1, len(agents)):
                        rate, cpu_ms = await _timed_fanout(group, agents, fanout, senders)
                        print(f"fan-out, group of {len(agents)}: {fanout} messages from "
                              f"{_who(senders)}, {rate:.0f} messages/s to every member, "
                              f"{cpu_ms * 1000:.0f} us CPU per delivered copy; "
                              f"floor (one MLS open, same run) {floor:.0f} us: "
                              f"{cpu_ms * 1000 / floor:.1f} x")  # fmt: skip
    if fanout_group is not None and fanout:
        await deployed_fanout(len(fanout_group[1]), fanout, floor)


async def _timed_fanout(
    group: bytes, agents: list[Agent], k: int, senders: int
) -> tuple[float, float]:
    """:func:`_fanout` from ``senders`` members, after a round not timed of one message
    from each: its first (its card looked up by every member, its leaf's secrets
    derived)."""
    await _fanout(group, agents, senders, senders=senders)
    return await _fanout(group, agents, k, senders=senders)


def _who(senders: int) -> str:
    return "one member" if senders == 1 else "every member in turn"


async def deployed_fanout(n: int, k: int, floor: float) -> None:
    """The fan-out again with the relay in a process of its own, as deployed: the
    members' CPU per delivered copy (this process) and the relay's, apart."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        relay_process(Path(tmp), k * n, max_message_bytes=LIMITS.max_message_bytes) as (url, pid),
    ):
        async with contextlib.AsyncExitStack() as stack:
            group, agents = await _group(url, n, stack)
            for senders in (1, n):
                await _fanout(group, agents, senders, senders=senders)  # as _timed_fanout
                relay_cpu = process_cpu(pid)
                rate, cpu_ms = await _fanout(group, agents, k, senders=senders)
                relay_us = (process_cpu(pid) - relay_cpu) * 1e6 / (k * (n - 1))
                print(f"fan-out as deployed (relay in its own process, {os.cpu_count()} CPUs), "
                      f"group of {n}: {k} messages from {_who(senders)}, {rate:.0f} messages/s "
                      f"to every member, {cpu_ms * 1000:.0f} us CPU per delivered copy in the "
                      f"members' process ({cpu_ms * 1000 / floor:.1f} x the floor) + "
                      f"{relay_us:.0f} us in the relay's")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fanout-messages", type=int, default=50)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    asyncio.run(main_async(sizes, args.repeat, args.fanout_messages))


if __name__ == "__main__":
    main()
