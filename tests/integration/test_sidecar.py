"""Plain a2a-sdk HTTP agents, which know nothing of Sealwire, talk through sidecars on real
loopback sockets (a2a-sdk's Starlette JSON-RPC apps under uvicorn, real SDK clients): over
Noise, over the Signal mailbox while the peer is down, with errors carried and hostile
local input refused."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
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
    GetTaskRequest,
    Role,
    SendMessageRequest,
)
from a2a.types import TaskState as SdkTaskState
from a2a.utils.errors import TaskNotFoundError as SdkTaskNotFound
from hypothesis import given, settings
from hypothesis import strategies as st
from ports import free_port
from starlette.applications import Starlette

import sealwire.adapters._sidecar as sidecar_module
from sealwire.adapters import PEER_HEADER, Sidecar
from sealwire.agent import Agent
from sealwire.binding import PeerIdentity
from sealwire.codec import A2AError, Method, Request, TaskNotFoundError, parse_request
from sealwire.identity import Identity, verify_card
from sealwire.model import GetTaskRequest as OurGetTask
from sealwire.store import MemoryStore
from sealwire.transport import TransportError


class Greeter(AgentExecutor):
    """A plain a2a-sdk agent; it reports who called it (the sidecar's header)."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None  # the SDK sets it for SendMessage
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


@contextlib.asynccontextmanager
async def upstream(name: str) -> AsyncIterator[str]:
    """A plain a2a-sdk JSON-RPC server on loopback; yields its base URL."""
    port = free_port()
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
    try:
        yield url
    finally:
        server.should_exit = True
        await task


def _agent_factory(**kwargs: object) -> Agent:
    return Agent(Identity.generate(), MemoryStore(), name="sidecar",
                 listen=["tcp://127.0.0.1:0"], **kwargs)  # type: ignore[arg-type]  # fmt: skip


async def _sdk_client(http: httpx.AsyncClient, url: str, *, streaming: bool = False) -> Any:
    card = await A2ACardResolver(http, url).get_agent_card()
    return ClientFactory(ClientConfig(streaming=streaming, httpx_client=http)).create(
        copy.deepcopy(card)
    )


async def _collect(events: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in events]


async def test_two_plain_a2a_agents_talk_through_two_sidecars() -> None:
    async with (
        upstream("alice") as url_a,
        upstream("bob") as url_b,
        Sidecar(url_b, _agent_factory) as bob_side,
    ):
        bob_card = dict(bob_side.agent.card.card)
        assert bob_card["name"] == "bob"  # the upstream's own card, Sealwire's keys added
        assert bob_card["supportedInterfaces"][0]["protocolBinding"].startswith("urn:sealwire")
        assert url_b not in json.dumps(bob_card)  # the plaintext upstream is not published
        async with (
            Sidecar(url_a, _agent_factory, peers={"bob": bob_card}) as alice_side,
            httpx.AsyncClient(trust_env=False) as http,
        ):
            for streaming in (False, True):
                client = await _sdk_client(
                    http, f"{alice_side.local_url}/peers/bob", streaming=streaming
                )
                message = new_text_message("alice", role=Role.ROLE_USER)
                events = await _collect(client.send_message(SendMessageRequest(message=message)))
                tasks = [e.task for e in events if e.HasField("task")]
                artifacts = {a.name: a.parts[0].text
                             for e in events if e.HasField("artifact_update")
                             for a in [e.artifact_update.artifact]}  # fmt: skip
                if streaming:  # SSE carried event by event, through both sidecars
                    assert len(events) > 2 and artifacts
                else:
                    assert tasks[-1].status.state == SdkTaskState.TASK_STATE_COMPLETED
                    artifacts = {a.name: a.parts[0].text for a in tasks[-1].artifacts}
                assert artifacts["greeting"] == "hello alice"
                # Bob's upstream learns the verified caller: Alice's sidecar agent.
                assert artifacts["caller"] == alice_side.agent.agent_id
            # An upstream's A2A error comes back to the SDK client with its own class.
            with pytest.raises(SdkTaskNotFound):
                await client.get_task(GetTaskRequest(id="no-such-task"))


async def test_one_access_line_per_request_each_way(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sealwire.sidecar.access")
    secret_text = "the plaintext of alice's request"
    async with (
        upstream("alice") as url_a,
        upstream("bob") as url_b,
        Sidecar(url_b, _agent_factory) as bob_side,
    ):
        bob_card = dict(bob_side.agent.card.card)
        async with (
            Sidecar(url_a, _agent_factory, peers={"bob": bob_card}) as alice_side,
            httpx.AsyncClient(trust_env=False) as http,
        ):
            client = await _sdk_client(http, f"{alice_side.local_url}/peers/bob")
            message = new_text_message(secret_text, role=Role.ROLE_USER)
            await _collect(client.send_message(SendMessageRequest(message=message)))
            with pytest.raises(SdkTaskNotFound):
                await client.get_task(GetTaskRequest(id="no-such-task"))
    lines = [r for r in caplog.records if r.name == "sealwire.sidecar.access"]
    by_way = {(r.direction, r.method, r.result) for r in lines}  # type: ignore[attr-defined]
    assert ("out", "SendMessage", "ok") in by_way  # alice's upstream to bob, at alice's sidecar
    assert ("in", "SendMessage", "ok") in by_way  # from alice, to bob's upstream
    assert ("out", "GetTask", str(TaskNotFoundError.code)) in by_way
    inbound = next(r for r in lines if r.direction == "in")  # type: ignore[attr-defined]
    assert inbound.who == alice_side.agent.agent_id  # type: ignore[attr-defined]
    assert inbound.bytes > len(secret_text)  # type: ignore[attr-defined]
    assert inbound.duration_ms >= 0  # type: ignore[attr-defined]
    assert secret_text not in caplog.text


async def test_over_the_signal_mailbox_while_the_peer_is_down(tmp_path: Path) -> None:
    from sealwire.relay import RelayClient
    from sealwire_relay import RelayConfig, running_relay

    config = RelayConfig(port=free_port(), identity_path=tmp_path / "relay.key",
                         backend_options={"path": str(tmp_path / "relay.db")})  # fmt: skip
    clients: list[RelayClient] = []

    def with_mailbox(
        identity: Identity, store: MemoryStore, relay_url: str
    ) -> Callable[..., Agent]:
        def make(**kwargs: object) -> Agent:
            relay = RelayClient(relay_url, identity)
            clients.append(relay)
            return Agent(identity, store, name="sidecar", listen=["tcp://127.0.0.1:0"],
                         relay=relay,
                         **kwargs)  # type: ignore[arg-type]  # fmt: skip

        return make

    try:
        async with (
            upstream("alice") as url_a,
            upstream("bob") as url_b,
            running_relay(config) as relay,
        ):
            bob = with_mailbox(Identity.generate(), MemoryStore(), relay.url)
            async with Sidecar(url_b, bob) as bob_side:  # publishes Bob's prekeys
                bob_card = dict(bob_side.agent.card.card)
            # Bob's sidecar is down now; Alice's upstream calls him anyway.
            alice = with_mailbox(Identity.generate(), MemoryStore(), relay.url)
            async with (
                Sidecar(url_a, alice, peers={"bob": bob_card}) as alice_side,
                httpx.AsyncClient(trust_env=False, timeout=30) as http,
            ):
                client = await _sdk_client(http, f"{alice_side.local_url}/peers/bob")
                message = new_text_message("while you were out", role=Role.ROLE_USER)
                call = asyncio.create_task(
                    _collect(client.send_message(SendMessageRequest(message=message)))
                )
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


async def test_local_endpoint_routes_cards_and_refuses_remote_callers() -> None:
    peer = Agent(Identity.generate(), MemoryStore(), name="peer", listen=["tcp://127.0.0.1:0"])
    async with (
        upstream("alice") as url_a,
        peer,
        Sidecar(url_a, _agent_factory, peers={"peer": peer.card.card}) as side,
        httpx.AsyncClient(base_url=side.local_url, trust_env=False) as http,
    ):
        own = (await http.get("/.well-known/agent-card.json")).json()
        assert verify_card(own).identity.agent_id == side.agent.agent_id
        assert own["name"] == "alice"
        theirs = (await http.get("/peers/peer/.well-known/agent-card.json")).json()
        assert theirs["name"] == "peer" and "signatures" not in theirs
        assert theirs["supportedInterfaces"] == [{"url": f"{side.local_url}/peers/peer",
                                                  "protocolBinding": "JSONRPC",
                                                  "protocolVersion": "1.0"}]  # fmt: skip
        assert (await http.get("/peers/nobody/.well-known/agent-card.json")).status_code == 404
        get = {"jsonrpc": "2.0", "id": 3, "method": "GetTask", "params": {"id": "t"}}
        assert (await http.post("/peers/nobody", json=get)).status_code == 404
        assert (await http.get("/peers/peer")).status_code == 405
        assert (await http.post("/", json=get)).json()["error"]["code"] == -32004
        # The peer's agent (Sealwire-native) answers through the sidecar.
        assert (await http.post("/peers/peer", json=get)).json()["error"]["code"] == -32001
        remote = httpx.ASGITransport(app=side.app, client=("192.0.2.7", 40000))
        async with httpx.AsyncClient(transport=remote, base_url="http://side") as outsider:
            assert (await outsider.post("/peers/peer", json=get)).status_code == 403


async def test_a_dead_upstream_gives_the_caller_an_error_not_a_hang() -> None:
    running: contextlib.AbstractAsyncContextManager[str] | None = upstream("bob")
    assert running is not None
    url_b = await running.__aenter__()
    try:
        async with (
            Sidecar(url_b, _agent_factory) as side,
            Agent(Identity.generate(), MemoryStore(), name="caller") as caller,
        ):
            card = caller.peer(side.agent.card.card)
            with pytest.raises(TaskNotFoundError):  # the upstream answers while it is up
                await caller.get_task(card, "t")
            await running.__aexit__(None, None, None)
            running = None
            with pytest.raises(A2AError) as raised:
                await asyncio.wait_for(caller.get_task(card, "t"), 20)
            assert raised.value.code == -32603
    finally:
        if running is not None:
            await running.__aexit__(None, None, None)


async def test_upstream_channels_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sidecar_module, "MAX_UPSTREAM_CHANNELS", 2)
    async with upstream("bob") as url_b, Sidecar(url_b, _agent_factory) as side:
        request = Request(id=1, method=Method.GET_TASK, params=OurGetTask(id="t"))
        for _ in range(2):
            for _ in range(3):
                caller = Identity.generate()
                peer = PeerIdentity(agent_id=caller.agent_id, identity=caller.public)
                with pytest.raises(TaskNotFoundError):  # each reached the upstream
                    await _collect(side._forward(request, peer))
                assert len(side._upstream_conns) <= 2


@pytest.mark.parametrize("method", ["GetTask", "SendMessage", "SendStreamingMessage"])
def test_hostile_local_bodies_get_json_rpc_errors_only(method: str) -> None:
    """Arbitrary bytes (and JSON-RPC-shaped junk) posted to ``/peers/<name>`` get a
    JSON-RPC error; a peer is dialled only for a body that parses as a request."""
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    dialled: list[object] = []

    async def setup() -> httpx.AsyncClient:
        peer = Agent(Identity.generate(), MemoryStore(), listen=["tcp://127.0.0.1:0"])
        peer_card = (await stack.enter_async_context(peer)).card.card
        url = await stack.enter_async_context(upstream("alice"))
        side = await stack.enter_async_context(Sidecar(url, _agent_factory, peers={"p": peer_card}))

        async def unreachable(*_a: object, **_k: object) -> Any:
            dialled.append(_a)
            raise TransportError("not dialled in this test")

        side.agent.connect = unreachable  # type: ignore[method-assign]
        transport = httpx.ASGITransport(app=side.app)
        return await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://side")
        )

    shaped = st.fixed_dictionaries(
        {"jsonrpc": st.sampled_from(["2.0", "1.0"]), "id": st.integers() | st.text(max_size=3),
         "method": st.sampled_from([method, "Nope"]),
         "params": st.dictionaries(st.sampled_from(["id", "message", "x"]),
                                   st.text(max_size=4) | st.integers(), max_size=2)},
    ).map(lambda d: json.dumps(d).encode())  # fmt: skip

    try:
        http = loop.run_until_complete(setup())

        @settings(max_examples=40, deadline=None)
        @given(st.binary(max_size=64) | shaped)
        def check(body: bytes) -> None:
            dialled.clear()
            response = loop.run_until_complete(http.post("/peers/p", content=body))
            assert response.status_code in (200, 413)
            if response.headers["content-type"].startswith("text/event-stream"):
                data = [ln[6:] for ln in response.text.splitlines() if ln.startswith("data: ")]
                answer = json.loads(data[-1])
            else:
                answer = response.json()
            assert isinstance(answer["error"]["code"], int)
            try:
                parse_request(body)
            except A2AError:
                assert not dialled
            else:
                assert answer["error"]["code"] == -32603

        check()
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()
