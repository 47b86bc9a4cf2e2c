"""A2A v1.0 §10, the gRPC binding on the TLS binding's endpoint (``grpc = true``):
HTTP/2 with trailers on core's listener, mutual TLS, an unmodified a2a-sdk gRPC client
(grpcio) that picks ``GRPC`` from the served card, and answers equivalent to
JSON-RPC's and HTTP+JSON's for the same requests to the same agent.

grpcio's TLS (BoringSSL) offers no Ed25519 signature, so the endpoint gives it its
second certificate, an ECDSA P-256 leaf issued by the agent (the TLS README, "gRPC"):
the client trusts the agent's issuing certificate (``sealwire_tls.grpc_root_pem``);
its own client certificate is the caller's Ed25519 one, which BoringSSL signs with."""

from __future__ import annotations

import asyncio
import copy
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from a2a_conformance import A2A, Rest, client_context, handler
from cryptography.hazmat.primitives import serialization

from sealwire.agent import Agent, TaskContext
from sealwire.identity import Identity
from sealwire.store import MemoryStore
from sealwire.transport._grpc import GRPC_PREFIX, frame, read_frames
from sealwire.transport.http import grpc_available
from sealwire_tls import grpc_root_pem, self_signed_certificate
from sealwire_tls.testing import tls_registry

grpc = pytest.importorskip("grpc")
pytestmark = pytest.mark.skipif(not grpc_available(), reason="a2a-sdk's protos are needed")


class World:
    """One agent with the TLS binding, ``grpc = true``; an HTTPS client (JSON-RPC, REST)
    and a gRPC channel to its one endpoint, both as the same pinned caller."""

    def __init__(self, agent: Agent, http: httpx.AsyncClient, card: dict[str, Any],
                 channel: Any, gate: asyncio.Event) -> None:  # fmt: skip
        self.agent, self.http, self.card, self.channel = agent, http, card, channel
        self.url = next(o.url for o in agent.card.offers if o.name == "tls") or ""
        self.grpc_url = _interface(card, "GRPC")
        self.rest = A2A("rest", agent, Rest(http, self.url), gate)
        self._ids = 0

    async def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._ids += 1
        body = {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params}
        answer = await self.http.post(self.url, json=body)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def stub(self) -> Any:
        from a2a.types import a2a_pb2_grpc

        return a2a_pb2_grpc.A2AServiceStub(self.channel)


def _interface(card: dict[str, Any], binding: str) -> str:
    urls = [i["url"] for i in card["supportedInterfaces"] if i["protocolBinding"] == binding]
    assert len(urls) == 1, card["supportedInterfaces"]
    url: str = urls[0]
    return url


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    gate = asyncio.Event()
    caller = Identity.generate()
    caller_pem = self_signed_certificate(caller).public_bytes(serialization.Encoding.PEM)
    (tmp_path / "caller.pem").write_bytes(caller_pem)
    options = {"tls": {"grpc": True,
                       "client_certificates": [str(tmp_path / "caller.pem")]}}  # fmt: skip
    agent = Agent(Identity.generate(), MemoryStore(), name="served", listen=["https://127.0.0.1:0"],
                  registry=tls_registry(), binding_options=options)  # fmt: skip

    async def serve(task: TaskContext) -> None:
        await handler(gate, task)

    agent.on_message(serve)
    async with agent:
        agent.trust.pin(caller.public)  # an external caller: pinned, it sends no card
        client = httpx.AsyncClient(verify=client_context(agent, caller, tmp_path), trust_env=False)
        https = next(o.url for o in agent.card.offers if o.name == "tls")
        try:
            card = (await client.get(https + "/.well-known/agent-card.json")).json()
            credentials = grpc.ssl_channel_credentials(
                root_certificates=grpc_root_pem(agent.identity),
                private_key=caller_key(caller),
                certificate_chain=caller_pem,
            )
            target = urlsplit(_interface(card, "GRPC")).netloc
            # a channel of its own connections: closing it closes them (grpc-core
            # otherwise shares connections between channels, past this test)
            options = [("grpc.use_local_subchannel_pool", 1)]
            async with grpc.aio.secure_channel(target, credentials, options) as channel:
                yield World(agent, client, card, channel, gate)
        finally:
            gate.set()
            await client.aclose()


def caller_key(identity: Identity) -> bytes:
    return identity.signing_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip


def _message(text: str) -> dict[str, Any]:
    return {"messageId": f"m-{text}", "role": "ROLE_USER", "parts": [{"text": text}]}


def _same_shape(value: Any) -> Any:
    """The answer with what differs per task (ids, timestamps) blanked."""
    if isinstance(value, dict):
        return {
            k: "*" if k in {"id", "taskId", "contextId", "messageId", "artifactId", "timestamp"}
            else _same_shape(v)
            for k, v in value.items()
        }  # fmt: skip
    if isinstance(value, list):
        return [_same_shape(v) for v in value]
    return value


def _status(error: Any) -> tuple[str, str | None]:
    """(gRPC status name, ErrorInfo reason) of a failed call."""
    from a2a.utils.grpc_status import status_from_call
    from google.rpc import error_details_pb2

    status = status_from_call(error)
    reason = None
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                assert info.domain == "a2a-protocol.org"
                reason = info.reason
    return error.code().name, reason


async def test_the_card_lists_grpc_beside_the_other_standard_bindings(world: World) -> None:
    origin = "https://" + urlsplit(world.url).netloc
    bindings = [(i["protocolBinding"], i["url"]) for i in world.card["supportedInterfaces"]]
    for expected in [("JSONRPC", world.url), ("HTTP+JSON", world.url), ("GRPC", origin)]:
        assert expected in bindings


async def test_transport_equivalence(world: World) -> None:
    """The same requests over JSON-RPC, HTTP+JSON and gRPC on the binding's one endpoint:
    the same answers (§5.1)."""
    from a2a.types import a2a_pb2
    from google.protobuf import json_format

    stub = world.stub()
    metadata = [("a2a-version", "1.0")]

    async def call(name: str, params: dict[str, Any]) -> Any:
        request = getattr(a2a_pb2, _REQUESTS[name])()
        json_format.ParseDict(params, request)
        return await getattr(stub, name)(request, metadata=metadata)

    async def by_grpc(name: str, params: dict[str, Any]) -> Any:
        return json_format.MessageToDict(await call(name, params))

    for text in ("abc", "hi", "ask"):
        params = {"message": _message(text)}
        by_rpc = (await world.rpc("SendMessage", params))["result"]
        assert _same_shape(by_rpc) == _same_shape(await by_grpc("SendMessage", params))
        assert _same_shape(by_rpc) == _same_shape(await world.rest.result("SendMessage", params))
    task = (await world.rpc("SendMessage", {"message": _message("xyz")}))["result"]["task"]
    for name, params in [
        ("GetTask", {"id": task["id"]}),
        ("GetTask", {"id": task["id"], "historyLength": 1}),
        ("ListTasks", {"pageSize": 2, "includeArtifacts": True}),
        ("ListTasks", {"status": "TASK_STATE_INPUT_REQUIRED"}),
        ("CreateTaskPushNotificationConfig",
         {"taskId": task["id"], "id": "c", "url": "https://hooks.example/h", "token": "t"}),
        ("GetTaskPushNotificationConfig", {"taskId": task["id"], "id": "c"}),
        ("ListTaskPushNotificationConfigs", {"taskId": task["id"]}),
    ]:  # fmt: skip
        # equal as messages (proto3 JSON leaves out what JSON-RPC states, "" and 0)
        answer = await call(name, params)
        by_rpc = json_format.ParseDict((await world.rpc(name, params))["result"], type(answer)())
        assert by_rpc == answer, name
        by_rest = json_format.ParseDict(await world.rest.result(name, params), type(answer)())
        assert by_rest == answer, name
    deleted = await by_grpc("DeleteTaskPushNotificationConfig", {"taskId": task["id"], "id": "c"})
    assert deleted == {}

    errors = {
        -32001: ("NOT_FOUND", "TASK_NOT_FOUND"),
        -32002: ("FAILED_PRECONDITION", "TASK_NOT_CANCELABLE"),
        -32004: ("FAILED_PRECONDITION", "UNSUPPORTED_OPERATION"),
        -32602: ("INVALID_ARGUMENT", "INVALID_PARAMS"),
    }
    for name, params in [
        ("GetTask", {"id": "no-such-task"}),
        ("CancelTask", {"id": task["id"]}),
        ("GetExtendedAgentCard", {}),
        ("GetTask", {"id": "x" * 1025}),
        ("GetTaskPushNotificationConfig", {"taskId": task["id"], "id": "no-such-config"}),
        ("CreateTaskPushNotificationConfig", {"taskId": task["id"], "url": "https://10.0.0.1/"}),
    ]:
        code = (await world.rpc(name, params))["error"]["code"]
        if name != "GetTask" or len(params["id"]) <= 1024:  # REST names the task in its path
            assert await world.rest.error(name, params) == code, name
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await by_grpc(name, params)
        assert _status(failed.value) == errors[code], name

    # streams: the same events, in the same order
    params = {"message": _message("abc")}
    body = {"jsonrpc": "2.0", "id": 9, "method": "SendStreamingMessage", "params": params}
    rpc_stream = await world.http.post(world.url, json=body)
    blocks = [block for block in rpc_stream.text.split("\n\n") if block.strip()]
    by_rpc_events = [json.loads(block.split("data: ", 1)[1])["result"] for block in blocks]
    request = json_format.ParseDict(params, a2a_pb2.SendMessageRequest())
    events = stub.SendStreamingMessage(request, metadata=metadata)
    by_grpc_events = [json_format.MessageToDict(event) async for event in events]
    assert _same_shape(by_rpc_events) == _same_shape(by_grpc_events)
    by_rest_events = [e["result"] for e in await world.rest.stream("SendStreamingMessage", params)]
    assert _same_shape(by_rpc_events) == _same_shape(by_rest_events)


_REQUESTS = {
    "SendMessage": "SendMessageRequest",
    "GetTask": "GetTaskRequest",
    "ListTasks": "ListTasksRequest",
    "CancelTask": "CancelTaskRequest",
    "GetExtendedAgentCard": "GetExtendedAgentCardRequest",
    "CreateTaskPushNotificationConfig": "TaskPushNotificationConfig",
    "GetTaskPushNotificationConfig": "GetTaskPushNotificationConfigRequest",
    "ListTaskPushNotificationConfigs": "ListTaskPushNotificationConfigsRequest",
    "DeleteTaskPushNotificationConfig": "DeleteTaskPushNotificationConfigRequest",
}


@pytest.mark.parametrize("streaming", [False, True])
async def test_an_unmodified_a2a_sdk_grpc_client(world: World, streaming: bool) -> None:
    from a2a.client import ClientConfig, ClientFactory
    from a2a.client.card_resolver import parse_agent_card
    from a2a.helpers.proto_helpers import new_text_message
    from a2a.types import (
        CancelTaskRequest,
        GetTaskPushNotificationConfigRequest,
        GetTaskRequest,
        ListTasksRequest,
        Role,
        SendMessageRequest,
        SubscribeToTaskRequest,
        TaskPushNotificationConfig,
        TaskState,
    )
    from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError

    asked: list[str] = []

    def channel_for(url: str) -> Any:  # the application's part: credentials for the URL
        asked.append(url)
        return world.channel

    # the card as served (JSONRPC, HTTP+JSON, GRPC and Sealwire's own), GRPC preferred
    config = ClientConfig(streaming=streaming, supported_protocol_bindings=["GRPC"],
                          grpc_channel_factory=channel_for)  # fmt: skip
    client = ClientFactory(config).create(parse_agent_card(copy.deepcopy(world.card)))
    request = SendMessageRequest(message=new_text_message("sdk", role=Role.ROLE_USER))
    events = [event async for event in client.send_message(request)]
    task_id = next(e.task.id for e in events if e.HasField("task"))
    task = await client.get_task(GetTaskRequest(id=task_id))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert task.artifacts[0].parts[0].text == "SDK"
    page = await client.list_tasks(ListTasksRequest(page_size=1))
    assert page.total_size == 1 and len(page.tasks) == 1
    with pytest.raises(TaskNotCancelableError):
        await client.cancel_task(CancelTaskRequest(id=task_id))
    with pytest.raises(TaskNotFoundError):
        await client.get_task(GetTaskRequest(id="no-such-task"))
    if streaming:
        with pytest.raises(TaskNotFoundError):
            async for _ in client.subscribe(SubscribeToTaskRequest(id="no-such-task")):
                pass
    made = await client.create_task_push_notification_config(
        TaskPushNotificationConfig(task_id=task_id, id="g", url="https://hooks.example/g")
    )
    assert made.id == "g"
    got = await client.get_task_push_notification_config(
        GetTaskPushNotificationConfigRequest(task_id=task_id, id="g")
    )
    assert got.url == "https://hooks.example/g"
    assert asked == [world.grpc_url]


async def test_an_unknown_method_is_unimplemented(world: World) -> None:
    unknown = world.channel.unary_unary(GRPC_PREFIX + "NoSuchMethod")
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await unknown(b"")
    assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_compression_is_unimplemented(world: World) -> None:
    from a2a.types import a2a_pb2

    big = a2a_pb2.ListTasksRequest(context_id="c" * 4096)  # small ones go uncompressed
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await world.stub().ListTasks(big, compression=grpc.Compression.Gzip)
    assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_service_parameters_are_metadata(world: World) -> None:
    from a2a.types import a2a_pb2

    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await world.stub().ListTasks(a2a_pb2.ListTasksRequest(), metadata=[("a2a-version", "2.0")])
    assert _status(failed.value) == ("FAILED_PRECONDITION", "VERSION_NOT_SUPPORTED")


async def test_invalid_params(world: World) -> None:
    from a2a.types import a2a_pb2

    no_parts = a2a_pb2.Message(message_id="m", role=a2a_pb2.ROLE_USER)  # §5.7
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await world.stub().SendMessage(a2a_pb2.SendMessageRequest(message=no_parts))
    assert _status(failed.value) == ("INVALID_ARGUMENT", "INVALID_PARAMS")
    from a2a.utils.grpc_status import status_from_call
    from google.rpc import error_details_pb2

    status = status_from_call(failed.value)
    assert status is not None
    bad = error_details_pb2.BadRequest()  # §9.5: the field at fault, as on JSON-RPC and REST
    assert any(detail.Unpack(bad) for detail in status.details)
    assert [v.field for v in bad.field_violations] == ["params.message.parts"]


async def test_http_1_1_is_no_grpc(world: World, tmp_path: Path) -> None:
    context = ssl.create_default_context(cafile=tmp_path / "server.pem")
    context.load_cert_chain(tmp_path / "client-cert.pem", tmp_path / "client-key.pem")
    async with httpx.AsyncClient(verify=context, trust_env=False) as http:
        answer = await http.post(world.grpc_url + GRPC_PREFIX + "ListTasks", content=frame(b""),
                                 headers={"content-type": "application/grpc"})  # fmt: skip
    assert answer.status_code == 426


def test_framing() -> None:
    assert read_frames(frame(b"abc") + frame(b"")) == [b"abc", b""]
    from sealwire.transport._grpc import _GrpcError

    for broken in (b"\x00\x00", frame(b"abc")[:-1], b"\x01" + frame(b"x")[1:]):
        with pytest.raises(_GrpcError):
            read_frames(broken)
