"""Two plain a2a-sdk HTTP agents, which know nothing of Sealwire, talk through two
sidecars over Noise on real loopback sockets (uvicorn servers and real SDK clients)."""

from __future__ import annotations

import asyncio
import copy
import socket

import httpx
import uvicorn
from a2a.client import ClientConfig, ClientFactory
from a2a.client.card_resolver import A2ACardResolver
from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Role,
    SendMessageRequest,
)
from a2a.types import TaskState as SdkTaskState
from starlette.applications import Starlette

from sealwire.adapters import PEER_HEADER, Sidecar
from sealwire.agent import Agent
from sealwire.identity import Identity
from sealwire.store import MemoryStore


class Greeter(AgentExecutor):
    """A plain a2a-sdk agent; it reports who called it (the sidecar's header)."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task or new_task_from_user_message(context.message)
        if context.current_task is None:
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        caller = context.call_context.state["headers"].get(PEER_HEADER.lower(), "?")
        await updater.add_artifact([new_text_part(f"hello {context.get_user_input()}")],
                                   name="greeting")  # fmt: skip
        await updater.add_artifact([new_text_part(caller)], name="caller")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _upstream(name: str) -> tuple[str, uvicorn.Server, asyncio.Task[None]]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    card = AgentCard(
        name=name, description=f"plain a2a-sdk agent {name}", version="1.0",
        supported_interfaces=[AgentInterface(url=url + "/", protocol_binding="JSONRPC",
                                             protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"], default_output_modes=["text/plain"],
        skills=[AgentSkill(id="greet", name="greet", description="Greets the caller",
                           tags=["demo"])],
    )  # fmt: skip
    handler = DefaultRequestHandler(agent_executor=Greeter(), task_store=InMemoryTaskStore(),
                                    agent_card=card)  # fmt: skip
    app = Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                           log_level="warning"))  # fmt: skip
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return url, server, task


def _agent_factory(**kwargs: object) -> Agent:
    return Agent(Identity.generate(), MemoryStore(), name="sidecar",
                 listen=["tcp://127.0.0.1:0"], **kwargs)  # type: ignore[arg-type]  # fmt: skip


async def test_two_plain_a2a_agents_talk_through_two_sidecars() -> None:
    url_a, server_a, task_a = await _upstream("alice")
    url_b, server_b, task_b = await _upstream("bob")
    bob_side = Sidecar(url_b, _agent_factory)
    try:
        async with bob_side:
            bob_card = dict(bob_side.agent.card.card)
            assert bob_card["name"] == "bob"  # the upstream's own card, Sealwire's keys added
            assert bob_card["supportedInterfaces"][0]["protocolBinding"].startswith("urn:sealwire")
            async with (
                Sidecar(url_a, _agent_factory, peers={"bob": bob_card}) as alice_side,
                httpx.AsyncClient(trust_env=False) as http,
            ):
                resolver = A2ACardResolver(http, f"{alice_side.local_url}/peers/bob")
                card = await resolver.get_agent_card()
                for streaming in (False, True):
                    factory = ClientFactory(ClientConfig(streaming=streaming,
                                                         httpx_client=http))  # fmt: skip
                    client = factory.create(copy.deepcopy(card))
                    message = new_text_message("alice", role=Role.ROLE_USER)
                    events = [e async for e in client.send_message(
                        SendMessageRequest(message=message))]  # fmt: skip
                    tasks = [e.task for e in events if e.HasField("task")]
                    artifacts = {a.name: a.parts[0].text
                                 for e in events if e.HasField("artifact_update")
                                 for a in [e.artifact_update.artifact]}  # fmt: skip
                    if not streaming:
                        assert tasks[-1].status.state == SdkTaskState.TASK_STATE_COMPLETED
                        artifacts = {a.name: a.parts[0].text for a in tasks[-1].artifacts}
                    assert artifacts["greeting"] == "hello alice"
                    # Bob's upstream learns the verified caller: Alice's sidecar agent.
                    assert artifacts["caller"] == alice_side.agent.agent_id
    finally:
        for server, task in ((server_a, task_a), (server_b, task_b)):
            server.should_exit = True
            await task


async def test_over_the_signal_mailbox_while_the_peer_is_down(tmp_path) -> None:
    from sealwire.relay import RelayClient, RelayConfig, running_relay

    config = RelayConfig(port=_free_port(), identity_path=tmp_path / "relay.key",
                         backend_options={"path": str(tmp_path / "relay.db")})  # fmt: skip
    url_a, server_a, task_a = await _upstream("alice")
    url_b, server_b, task_b = await _upstream("bob")
    clients: list[RelayClient] = []

    def with_mailbox(identity: Identity, store: MemoryStore, relay_url: str):
        def make(**kwargs: object) -> Agent:
            relay = RelayClient(relay_url, identity)
            clients.append(relay)
            return Agent(identity, store, name="sidecar", listen=["tcp://127.0.0.1:0"],
                         relay=relay, relay_address=relay.mailbox_address,
                         **kwargs)  # type: ignore[arg-type]  # fmt: skip

        return make

    try:
        async with running_relay(config) as relay:
            bob = with_mailbox(Identity.generate(), MemoryStore(), relay.url)
            async with Sidecar(url_b, bob) as bob_side:  # publishes Bob's prekeys
                bob_card = dict(bob_side.agent.card.card)
            # Bob's sidecar is down now; Alice's upstream calls him anyway.
            alice = with_mailbox(Identity.generate(), MemoryStore(), relay.url)
            async with (
                Sidecar(url_a, alice, peers={"bob": bob_card}) as alice_side,
                httpx.AsyncClient(trust_env=False, timeout=30) as http,
            ):
                card = await A2ACardResolver(
                    http, f"{alice_side.local_url}/peers/bob"
                ).get_agent_card()
                client = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(
                    card
                )
                message = new_text_message("while you were out", role=Role.ROLE_USER)
                call = asyncio.create_task(_collect(client.send_message(
                    SendMessageRequest(message=message))))  # fmt: skip
                await asyncio.sleep(0.5)
                assert not call.done()  # sealed into Bob's mailbox, waiting for him
                async with Sidecar(url_b, bob):  # Bob comes back
                    events = await asyncio.wait_for(call, 20)
                task = events[-1].task
                assert task.status.state == SdkTaskState.TASK_STATE_COMPLETED
                texts = {a.name: a.parts[0].text for a in task.artifacts}
                assert texts["greeting"] == "hello while you were out"
                assert texts["caller"] == alice_side.agent.agent_id
    finally:
        for relay_client in clients:
            await relay_client.close()
        for server, task in ((server_a, task_a), (server_b, task_b)):
            server.should_exit = True
            await task


async def _collect(events):
    return [event async for event in events]
