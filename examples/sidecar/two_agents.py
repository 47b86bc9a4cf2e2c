"""Two existing a2a-sdk agents, which know nothing of Sealwire, talk through two sidecars.

Run it from the repository root: ``uv run python examples/sidecar/two_agents.py``.

1. Alice and Bob are plain a2a-sdk JSON-RPC servers on loopback (uvicorn).
2. Each gets a Sealwire sidecar: its agent publishes the upstream's own card
   with Sealwire's keys and bindings added, signed; a relay serves mailboxes.
3. Alice's code calls Bob through its sidecar's local URL with the ordinary
   a2a-sdk client: the call travels over Noise.
4. Bob's sidecar goes down; Alice calls again: the call is sealed with the
   Signal binding into Bob's relay mailbox, and answered when Bob is back.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

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
from starlette.applications import Starlette

from sealwire.adapters import PEER_HEADER, Sidecar
from sealwire.agent import Agent
from sealwire.identity import Identity
from sealwire.relay import RelayClient
from sealwire.store import MemoryStore
from sealwire_relay import RelayConfig, running_relay


class Greeter(AgentExecutor):
    """An ordinary a2a-sdk agent."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None  # the SDK sets it for SendMessage
        task = context.current_task or new_task_from_user_message(context.message)
        if context.current_task is None:
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        caller = context.call_context.state["headers"].get(PEER_HEADER.lower(), "?")
        reply = f"hello {context.get_user_input()!r}, from a verified {caller[:16]}..."
        await updater.add_artifact([new_text_part(reply)], name="greeting")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def plain_a2a_server(name: str) -> tuple[str, uvicorn.Server, asyncio.Task[None]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    card = AgentCard(
        name=name, description=f"a plain a2a-sdk agent called {name}", version="1.0",
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


async def call(http: httpx.AsyncClient, peer_url: str, text: str) -> str:
    """What Alice's own code does: an ordinary a2a-sdk client call."""
    card = await A2ACardResolver(http, peer_url).get_agent_card()
    client = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
    message = new_text_message(text, role=Role.ROLE_USER)
    events = [e async for e in client.send_message(SendMessageRequest(message=message))]
    return str(events[-1].task.artifacts[0].parts[0].text)


async def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="sealwire-example-"))
    config = RelayConfig(port=free_port(), identity_path=work / "relay.key",
                         backend_options={"path": str(work / "relay.db")})  # fmt: skip
    alice_url, alice_server, alice_task = await plain_a2a_server("alice")
    bob_url, bob_server, bob_task = await plain_a2a_server("bob")
    relays: list[RelayClient] = []
    try:
        async with running_relay(config) as relay:

            def sidecar_agent(identity: Identity, store: MemoryStore) -> Callable[..., Agent]:
                def make(**options: object) -> Agent:
                    client = RelayClient(relay.url, identity)
                    relays.append(client)
                    return Agent(identity, store, name="sidecar", listen=["tcp://127.0.0.1:0"],
                                 relay=client,
                                 **options)  # type: ignore[arg-type]  # fmt: skip

                return make

            bob = sidecar_agent(Identity.generate(), MemoryStore())
            alice = sidecar_agent(Identity.generate(), MemoryStore())
            bob_side = Sidecar(bob_url, bob)
            await bob_side.start()
            bob_card = dict(bob_side.agent.card.card)
            print(f"bob's sidecar publishes {[o.name for o in bob_side.agent.card.offers]}")
            async with (
                Sidecar(alice_url, alice, peers={"bob": bob_card}) as alice_side,
                httpx.AsyncClient(trust_env=False, timeout=30) as http,
            ):
                peer_url = f"{alice_side.local_url}/peers/bob"
                print("over Noise:", await call(http, peer_url, "good morning"))
                await bob_side.stop()
                print("bob's sidecar is down; calling anyway (into his Signal mailbox)...")
                pending = asyncio.create_task(call(http, peer_url, "are you there?"))
                await asyncio.sleep(1)
                async with Sidecar(bob_url, bob):
                    print("bob is back; over Signal:", await asyncio.wait_for(pending, 30))
    finally:
        for client in relays:
            await client.close()
        for server, task in ((alice_server, alice_task), (bob_server, bob_task)):
            server.should_exit = True
            await task
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
