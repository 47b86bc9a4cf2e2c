"""The sidecar's A2A JSON-RPC HTTP app: routing, hostile bodies, errors, SSE."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sealwire.adapters._http import MAX_BODY, JsonRpcApp
from sealwire.codec import Request, TaskNotFoundError
from sealwire.model import StreamResponse, Task, TaskState, TaskStatus

CARD = {"name": "peer"}


async def serve(request: Request) -> AsyncIterator[Any]:
    if request.method.streaming:
        for state in (TaskState.WORKING, TaskState.COMPLETED):
            yield StreamResponse(task=Task(id="t", context_id="c",
                                           status=TaskStatus(state=state)))  # fmt: skip
        return
    if request.params.id == "missing":
        raise TaskNotFoundError("no such task")
    yield Task(id=request.params.id, context_id="c", status=TaskStatus(state=TaskState.WORKING))


def route(path: str) -> Any:
    return (serve, CARD) if path == "/peers/p" else None


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=JsonRpcApp(route))
    async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
        yield client


def rpc(method: str, params: dict[str, Any], id_: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}


async def test_unary_call_and_a2a_errors(http: httpx.AsyncClient) -> None:
    ok = (await http.post("/peers/p", json=rpc("GetTask", {"id": "t1"}))).json()
    assert ok["result"]["id"] == "t1"
    err = (await http.post("/peers/p", json=rpc("GetTask", {"id": "missing"}, 7))).json()
    assert err["id"] == 7 and err["error"]["code"] == -32001


async def test_stream_is_server_sent_events(http: httpx.AsyncClient) -> None:
    body = rpc("SendStreamingMessage", {"message": {"messageId": "m", "role": "ROLE_USER",
                                                    "parts": [{"text": "hi"}]}})  # fmt: skip
    response = await http.post("/peers/p", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data:")
    ]
    states = [e["result"]["task"]["status"]["state"] for e in events]
    assert states == ["TASK_STATE_WORKING", "TASK_STATE_COMPLETED"]


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"jsonrpc":"2.0","id":1,"method":"No"}'])
async def test_hostile_bodies_get_json_rpc_errors(http: httpx.AsyncClient, body: bytes) -> None:
    answer = (await http.post("/peers/p", content=body)).json()
    assert answer["error"]["code"] in (-32700, -32600, -32601, -32602)


async def test_routing_limits_and_card(http: httpx.AsyncClient) -> None:
    assert (await http.post("/nowhere", json=rpc("GetTask", {"id": "x"}))).status_code == 404
    assert (await http.get("/peers/p")).status_code == 405
    assert (await http.get("/peers/p/.well-known/agent-card.json")).json() == CARD
    huge = (await http.post("/peers/p", content=b"x" * (MAX_BODY + 1))).json()
    assert huge["error"]["code"] == -32603
