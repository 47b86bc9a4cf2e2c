"""An agent written for a2a-sdk (its AgentExecutor, behind the SDK's DefaultRequestHandler)
runs unchanged behind a Sealwire agent and is called over Noise on real loopback TCP; an
unmodified a2a-sdk client calls Sealwire agents through ClientFactory.register; errors keep
their A2A codes both ways; messages cross between the two models unchanged."""

from __future__ import annotations

import pytest
from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire.adapters.a2a_sdk import A2ASdkDispatcher
from sealwire.agent import Agent
from sealwire.identity import Identity
from sealwire.model import Message, Part, Role, Task, TaskState
from sealwire.store import MemoryStore


class ShoutingExecutor(AgentExecutor):
    """An ordinary a2a-sdk agent: it knows nothing of Sealwire."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task
        if task is None:
            assert context.message is not None
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
        assert isinstance(task, Task)
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


# -- errors, context, untrusted cards, conversion ----------------------------------------------


async def test_errors_keep_their_codes_both_ways() -> None:
    """An SDK handler's TaskNotFoundError reaches a Sealwire caller as ours (-32001), and
    a Sealwire peer's error reaches an a2a-sdk client as the SDK's own error class."""
    import copy

    from a2a.client import ClientConfig, ClientFactory
    from a2a.client.card_resolver import parse_agent_card
    from a2a.types import GetTaskRequest
    from a2a.utils.errors import TaskNotFoundError as SdkTaskNotFound

    from sealwire.adapters.a2a_sdk import register_sealwire_transports, sealwire_binding_uris
    from sealwire.codec import TaskNotFoundError

    holder: dict[str, Agent] = {}
    dispatcher = A2ASdkDispatcher.for_executor(ShoutingExecutor(), lambda: holder["s"].card.card)
    server = Agent(Identity.generate(), MemoryStore(), name="sdk-agent",
                   listen=["tcp://127.0.0.1:0"], dispatcher=dispatcher)  # fmt: skip
    holder["s"] = server
    caller = Agent(Identity.generate(), MemoryStore(), name="caller")
    async with server, caller:
        peer = caller.peer(server.card.card)
        with pytest.raises(TaskNotFoundError):
            await caller.get_task(peer, "no-such-task")
        factory = ClientFactory(
            ClientConfig(supported_protocol_bindings=sealwire_binding_uris(caller))
        )
        register_sealwire_transports(factory, caller)
        client = factory.create(parse_agent_card(copy.deepcopy(dict(server.card.card))))
        with pytest.raises(SdkTaskNotFound):
            await client.get_task(GetTaskRequest(id="no-such-task"))


async def test_a_tampered_card_is_refused_as_the_sdk_would() -> None:
    import copy

    from a2a.client import ClientConfig, ClientFactory
    from a2a.client.card_resolver import parse_agent_card
    from a2a.client.errors import A2AClientError

    from sealwire.adapters.a2a_sdk import register_sealwire_transports, sealwire_binding_uris

    server = Agent(Identity.generate(), MemoryStore(), name="honest",
                   listen=["tcp://127.0.0.1:0"])  # fmt: skip
    caller = Agent(Identity.generate(), MemoryStore(), name="caller")
    async with server, caller:
        card = copy.deepcopy(dict(server.card.card))
        card["name"] = "mallory"  # the signature no longer covers the card
        factory = ClientFactory(
            ClientConfig(supported_protocol_bindings=sealwire_binding_uris(caller))
        )
        register_sealwire_transports(factory, caller)
        with pytest.raises(A2AClientError):
            factory.create(parse_agent_card(card))


async def test_executor_context_carries_the_verified_peer() -> None:
    from sealwire.binding import PeerIdentity
    from sealwire.codec import Method, Request
    from sealwire.model import Message, Part, Role, SendMessageRequest

    seen: dict[str, object] = {}

    class Recorder(AgentExecutor):
        async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
            seen["user"] = context.call_context.user
            seen["header"] = context.call_context.state["headers"]["sealwire-peer"]
            assert context.message is not None
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
            await TaskUpdater(event_queue, task.id, task.context_id).complete()

        async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
            raise NotImplementedError

    card = Agent(Identity.generate(), MemoryStore())
    async with card:
        dispatcher = A2ASdkDispatcher.for_executor(Recorder(), lambda: card.card.card)
        caller = Identity.generate()
        peer = PeerIdentity(agent_id=caller.agent_id, identity=caller.public)
        message = Message(message_id="m1", role=Role.USER, parts=(Part.from_text("hi"),))
        request = Request(id=1, method=Method.SEND_MESSAGE,
                          params=SendMessageRequest(message=message))  # fmt: skip
        [response] = [r async for r in dispatcher(request, peer)]
    assert response.task is not None and response.task.status.state is TaskState.COMPLETED
    assert seen["header"] == caller.agent_id
    user = seen["user"]
    assert user.is_authenticated and user.user_name == caller.agent_id  # type: ignore[attr-defined]
    assert user.peer == peer  # type: ignore[attr-defined]


_json_leaf = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_parts = st.one_of(
    st.builds(Part.from_text, st.text(max_size=20)),
    st.builds(Part.from_raw, st.binary(max_size=20)),
    st.builds(Part.from_url, st.just("https://example.com/f")),
    st.builds(Part.from_data, st.dictionaries(st.text(max_size=5), _json, max_size=3)),
)
_messages = st.builds(
    Message,
    message_id=st.text(min_size=1, max_size=10),
    role=st.sampled_from(Role),
    parts=st.lists(_parts, min_size=1, max_size=3).map(tuple),
    context_id=st.none() | st.text(min_size=1, max_size=10),
    metadata=st.none() | st.dictionaries(st.text(max_size=5), _json, min_size=1, max_size=3),
)


@settings(max_examples=60, deadline=None)
@given(_messages)
def test_messages_cross_to_the_sdk_and_back_unchanged(message: Message) -> None:
    """Sealwire model -> the SDK's protobuf -> Sealwire model is the identity."""
    from a2a import types as sdk

    from sealwire.adapters._a2a_sdk_client import _to_sdk
    from sealwire.adapters._a2a_sdk_server import _ours

    proto = _to_sdk(message, sdk.Message)
    assert isinstance(proto, sdk.Message)
    assert _ours(Message, proto) == message


def test_core_does_not_import_a2a_sdk() -> None:
    """a2a-sdk is an optional extra: only ``sealwire.adapters.a2a_sdk`` imports it."""
    import subprocess
    import sys

    code = (
        "import sys, sealwire, sealwire.cli, sealwire.adapters, sealwire.agent, sealwire.plugins\n"
        "sealwire.plugins.load_registry()\n"
        "assert not [m for m in sys.modules if m == 'a2a' or m.startswith('a2a.')], 'a2a'\n"
        "import sealwire.adapters.a2a_sdk\n"
        "assert 'a2a' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
