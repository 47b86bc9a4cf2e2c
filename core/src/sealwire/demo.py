"""``sealwire demo``: two local agents exchange a task over a real secure binding.

Everything runs on embedded defaults: in-memory stores, fresh identities,
loopback sockets. The "analyst" agent serves; the "client" agent sends it a
task, streams its progress and artifacts, then reads the finished task back.
"""

from __future__ import annotations

from sealwire.agent import Agent, TaskContext
from sealwire.binding import Property, Shape
from sealwire.errors import ConfigurationError
from sealwire.identity import Identity
from sealwire.model import TaskState
from sealwire.plugins import Registry
from sealwire.policy import Situation
from sealwire.store import MemoryStore

__all__ = ["run_demo"]


async def analyst(task: TaskContext) -> None:
    """The demo's handler: counts words, streaming progress and an artifact."""
    text = " ".join(p.text for p in task.message.parts if p.text is not None)
    await task.working(f"analysing {len(text)} characters from {task.peer.agent_id[:12]}...")
    words = text.split()
    await task.artifact(
        f"words: {len(words)}, distinct: {len({w.lower() for w in words})}", name="word-count"
    )
    await task.complete("analysis done")


def _say(line: str) -> None:
    print(line, flush=True)


async def run_demo(registry: Registry, *, transport: str = "tcp") -> int:
    """Run the demo; returns the process exit code."""
    live = [
        cls
        for cls in registry.bindings.values()
        if cls.info.shape is Shape.SESSION
        and transport in cls.info.schemes
        and Property.HTTP_INTEROP not in cls.info.properties
    ]
    if not live:
        raise ConfigurationError(
            f"no session binding over {transport} is installed (install sealwire-noise)"
        )
    url = f"{transport}://127.0.0.1:0"
    server = Agent(
        Identity.generate(), MemoryStore(), name="analyst", listen=[url], registry=registry
    )
    client = Agent(Identity.generate(), MemoryStore(), name="client", registry=registry)
    server.on_message(analyst)
    async with server, client:
        peer = client.peer(server.card.card)
        situation = Situation(online=True, datagram=transport == "udp")
        _say(f"analyst {server.agent_id} listens on {server.card.offers[0].url}")
        _say(f"client  {client.agent_id}")
        _say("policy decision:")
        for line in client.explain(peer, situation).explain().splitlines():
            _say(f"  {line}")
        task_id = None
        async for event in client.stream_message(
            peer,
            "Sealwire gives each agent conversation the protocol made for it",
            situation=situation,
        ):
            if event.task is not None:
                task_id = event.task.id
                _say(f"task {task_id}: {event.task.status.state.name}")
            elif event.status_update is not None:
                status = event.status_update.status
                note = ""
                if status.message is not None and status.message.parts:
                    note = f" - {status.message.parts[0].text}"
                _say(f"status: {status.state.name}{note}")
            elif event.artifact_update is not None:
                artifact = event.artifact_update.artifact
                _say(f"artifact {artifact.name}: {artifact.parts[0].text}")
        if task_id is None:
            raise ConfigurationError("the analyst answered without a task")
        task = await client.get_task(peer, task_id)
        _say(f"final state: {task.status.state.name}, {len(task.artifacts)} artifact(s)")
        return 0 if task.status.state is TaskState.COMPLETED else 1
