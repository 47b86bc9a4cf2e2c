"""An agent written for a2a-sdk (its AgentExecutor, behind the SDK's DefaultRequestHandler)
runs unchanged behind a Sealwire agent and is called over Noise on real loopback TCP."""

from __future__ import annotations

from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater

from sealwire.adapters.a2a_sdk import A2ASdkDispatcher
from sealwire.agent import Agent
from sealwire.identity import Identity
from sealwire.model import TaskState
from sealwire.store import MemoryStore


class ShoutingExecutor(AgentExecutor):
    """An ordinary a2a-sdk agent: it knows nothing of Sealwire."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task
        if task is None:
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        caller = context.call_context.user.user_name
        await updater.add_artifact([new_text_part(context.get_user_input().upper())],
                                   name="shout")  # fmt: skip
        await updater.add_artifact([new_text_part(caller)], name="caller")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


async def test_a2a_sdk_executor_behind_sealwire() -> None:
    holder: dict[str, Agent] = {}
    dispatcher = A2ASdkDispatcher.for_executor(
        ShoutingExecutor(), lambda: holder["server"].card.card
    )
    server = Agent(Identity.generate(), MemoryStore(), name="sdk-agent",
                   listen=["tcp://127.0.0.1:0"], dispatcher=dispatcher)  # fmt: skip
    holder["server"] = server
    client = Agent(Identity.generate(), MemoryStore(), name="caller")
    async with server, client:
        peer = client.peer(server.card.card)
        assert client.explain(peer).binding == "noise"
        task = await client.send_message(peer, "hello from sealwire")
        assert task.status.state is TaskState.COMPLETED
        texts = {a.name: a.parts[0].text for a in task.artifacts}
        assert texts["shout"] == "HELLO FROM SEALWIRE"
        assert texts["caller"] == client.agent_id  # the verified peer reached the executor
        again = await client.get_task(peer, task.id)
        assert again.id == task.id and again.status.state is TaskState.COMPLETED
        kinds = []
        async for event in client.stream_message(peer, "stream please"):
            kinds.append(next(k for k in ("task", "message", "status_update", "artifact_update")
                              if getattr(event, k) is not None))  # fmt: skip
        assert kinds[0] == "task" and "artifact_update" in kinds
        assert kinds[-1] == "status_update"


async def test_unmodified_a2a_sdk_client_calls_through_sealwire() -> None:
    """The SDK's own ClientFactory picks the Sealwire binding from the card's
    supportedInterfaces, and its Client talks to a Sealwire agent over Noise."""
    import copy

    from a2a.client import ClientConfig, ClientFactory
    from a2a.client.card_resolver import parse_agent_card
    from a2a.helpers.proto_helpers import new_text_message
    from a2a.types import Role, SendMessageRequest, TaskState

    from sealwire.adapters.a2a_sdk import register_sealwire_transports, sealwire_binding_uris
    from sealwire.agent import TaskContext

    async def handler(task: TaskContext) -> None:
        await task.artifact(f"got {task.message.parts[0].text}", name="echo")
        await task.complete()

    server = Agent(Identity.generate(), MemoryStore(), name="sealwire-native",
                   listen=["tcp://127.0.0.1:0"])  # fmt: skip
    server.on_message(handler)
    caller = Agent(Identity.generate(), MemoryStore(), name="sdk-caller")
    async with server, caller:
        for streaming in (False, True):
            config = ClientConfig(
                streaming=streaming, supported_protocol_bindings=sealwire_binding_uris(caller)
            )
            factory = ClientFactory(config)
            register_sealwire_transports(factory, caller)
            client = factory.create(parse_agent_card(copy.deepcopy(dict(server.card.card))))
            message = new_text_message("ping", role=Role.ROLE_USER)
            events = [e async for e in client.send_message(SendMessageRequest(message=message))]
            final = events[-1]
            task = final.task if final.HasField("task") else None
            if task is None:  # streaming: fetch the finished task by id
                task_id = next(e.task.id for e in events if e.HasField("task"))
                from a2a.types import GetTaskRequest

                task = await client.get_task(GetTaskRequest(id=task_id))
            assert task.status.state == TaskState.TASK_STATE_COMPLETED
            assert task.artifacts[0].parts[0].text == "got ping"
            await client.close()
