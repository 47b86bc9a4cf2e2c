"""JSON-RPC over a channel: concurrency, streams, hostile frames, closing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from async_generators import left_to_the_collector
from testonly_binding import PlaintextChannel

from sealwire.agent import RpcConnection
from sealwire.agent._rpc import MAX_INBOUND_REQUESTS
from sealwire.binding import ChannelClosed, PeerIdentity
from sealwire.codec import InternalRpcError, Method, Request, TaskNotFoundError
from sealwire.identity import Identity, verify_card
from sealwire.model import GetTaskRequest, Task, TaskState, TaskStatus
from sealwire.transport import memory_pair


def _card() -> Any:
    identity = Identity.generate()
    from sealwire.agent._card import build_card

    return verify_card(
        build_card(
            identity,
            name="x",
            description="x",
            version="0",
            bindings=[],
            listen_urls=[],
            relay_address=None,
            options={},
        )
    )


async def dispatcher(request: Request, peer: PeerIdentity) -> AsyncIterator[Any]:
    task_id = request.params.id
    if task_id == "missing":
        raise TaskNotFoundError("no such task")
    if task_id == "crash":
        raise RuntimeError("secret internal detail")
    if task_id.startswith("slow"):
        await asyncio.sleep(float(task_id[4:].split("-")[0]))
    yield Task(id=task_id, context_id="c", status=TaskStatus(state=TaskState.COMPLETED))


@pytest.fixture
async def pair():
    a, b = memory_pair()
    left = RpcConnection(PlaintextChannel(a, _card()), dispatcher)
    right = RpcConnection(PlaintextChannel(b, _card()), dispatcher)
    left.start()
    right.start()
    yield left, right
    await left.close()
    await right.close()


async def test_many_calls_in_flight_resolve_to_their_own_answers(pair) -> None:
    left, _right = pair
    ids = [f"slow0.0{i % 5}-{i}" for i in range(50)]
    results = await asyncio.gather(*(left.call(Method.GET_TASK, GetTaskRequest(id=i)) for i in ids))
    assert [t.id for t in results] == ids


async def test_errors_keep_their_code_and_hide_internals(pair) -> None:
    left, _right = pair
    with pytest.raises(TaskNotFoundError) as info:
        await left.call(Method.GET_TASK, GetTaskRequest(id="missing"))
    assert info.value.code == -32001
    with pytest.raises(InternalRpcError) as crash:
        await left.call(Method.GET_TASK, GetTaskRequest(id="crash"))
    assert "secret" not in str(crash.value)


async def test_a_call_closes_its_request_stream_itself(pair) -> None:
    """The request's generator ends with the call, not later by the garbage collector
    (whose finalizer would hand each call's close to the event loop as a task)."""
    left, _right = pair
    with left_to_the_collector() as dropped:
        for i in range(3):
            assert (await left.call(Method.GET_TASK, GetTaskRequest(id=f"t{i}"))).id == f"t{i}"
    assert dropped == []


async def test_both_sides_can_call(pair) -> None:
    left, right = pair
    assert (await right.call(Method.GET_TASK, GetTaskRequest(id="r"))).id == "r"
    assert (await left.call(Method.GET_TASK, GetTaskRequest(id="l"))).id == "l"


async def test_malformed_frames_are_dropped_and_the_connection_lives() -> None:
    a, b = memory_pair()
    conn = RpcConnection(PlaintextChannel(b, _card()), dispatcher)
    client = RpcConnection(PlaintextChannel(a, _card()), None)
    conn.start()
    client.start()
    for junk in (b"", b"\xff\xfe", b"{}", b"[1,2]", b'{"jsonrpc":{"id":1}}' * 3):
        await a.send(junk)
    result = await client.call(Method.GET_TASK, GetTaskRequest(id="ok"))
    assert result.id == "ok"
    await client.close()
    await conn.close()


async def test_closing_fails_pending_calls(pair) -> None:
    left, right = pair
    call = asyncio.create_task(left.call(Method.GET_TASK, GetTaskRequest(id="slow5")))
    await asyncio.sleep(0.05)
    await right.close()
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(call, 5)
    with pytest.raises(ChannelClosed):
        await left.call(Method.GET_TASK, GetTaskRequest(id="after"))


async def test_inbound_requests_are_bounded(pair) -> None:
    left, _right = pair
    calls = [
        asyncio.create_task(left.call(Method.GET_TASK, GetTaskRequest(id=f"slow1-{i}")))
        for i in range(MAX_INBOUND_REQUESTS + 8)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    refused = [r for r in results if isinstance(r, InternalRpcError)]
    assert len(refused) == 8
    assert sum(isinstance(r, Task) for r in results) == MAX_INBOUND_REQUESTS


async def test_malformed_request_with_an_id_gets_its_error_and_versions_are_checked() -> None:
    import json

    a, b = memory_pair()
    server = RpcConnection(PlaintextChannel(b, _card()), dispatcher)
    server.start()
    bad = {"serviceParameters": {}, "jsonrpc": {"jsonrpc": "2.0", "id": 9, "method": "Nope"}}
    await a.send(json.dumps(bad).encode())
    answer = json.loads(await asyncio.wait_for(a.receive(), 5))
    assert answer["jsonrpc"]["id"] == 9 and answer["jsonrpc"]["error"]["code"] == -32601
    future = {
        "serviceParameters": {"A2A-Version": "2.0"},
        "jsonrpc": {"jsonrpc": "2.0", "id": 10, "method": "GetTask", "params": {"id": "x"}},
    }
    await a.send(json.dumps(future).encode())
    answer = json.loads(await asyncio.wait_for(a.receive(), 5))
    assert answer["jsonrpc"]["error"]["code"] == -32009
    await server.close()
