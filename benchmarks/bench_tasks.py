"""Agents do not slow down with age: SendMessage calls/s at the start and at the end of a long run.

Run: ``uv run python benchmarks/bench_tasks.py [--tasks N] [--window W]``.

One agent (in-memory store, a handler that completes at once) serves ``N``
``SendMessage`` requests through its dispatcher, as every binding hands them
on, one after the other; the calls/s of the first ``W`` and of the last ``W``
are printed with their ratio (1.0: a task costs the same after N tasks as
after none). The agent keeps at most ``MAX_LIVE_TASKS`` tasks in memory; the
run goes well past it, and the live table's size is printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from sealwire.agent import Agent, TaskContext
from sealwire.agent._tasks import MAX_LIVE_TASKS
from sealwire.binding import PeerIdentity
from sealwire.codec import Method, Request
from sealwire.identity import Identity
from sealwire.model import Message, Part, Role, SendMessageRequest
from sealwire.store import MemoryStore


async def _complete(task: TaskContext) -> None:
    await task.complete("done")


async def main_async(tasks: int, window: int) -> None:
    agent = Agent(Identity.generate(), MemoryStore(), name="server")
    agent.on_message(_complete)
    caller = Identity.generate()
    peer = PeerIdentity(agent_id=caller.agent_id, identity=caller.public)

    async def one(i: int) -> None:
        message = Message(message_id=uuid.uuid4().hex, role=Role.USER, parts=(Part(text="hi"),))
        params = SendMessageRequest(message=message)
        request = Request(id=i, method=Method.SEND_MESSAGE, params=params)
        async for _ in agent.dispatch(request, peer):
            pass

    rates = []
    for i in range(tasks):
        if i in (0, tasks - window):
            start = time.perf_counter()
        await one(i)
        if i in (window - 1, tasks - 1):
            rates.append(window / (time.perf_counter() - start))
    first, last = rates
    print(f"{tasks} tasks (at most {MAX_LIVE_TASKS} kept in memory):")
    print(f"  first {window}: {first:8.0f} calls/s")
    print(f"  last  {window}: {last:8.0f} calls/s   {last / first:5.2f} x the first")
    print(f"  tasks in memory at the end: {len(agent.tasks._runs)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=2_000)
    args = parser.parse_args()
    asyncio.run(main_async(args.tasks, args.window))


if __name__ == "__main__":
    main()
