"""A2A JSON-RPC over plain HTTP on loopback: the ASGI app, the listener, the client channel, SSE."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire.agent._rpc import RpcConnection
from sealwire.binding import ChannelClosed, PeerIdentity
from sealwire.codec import A2AError, Method, Request, TaskNotFoundError
from sealwire.errors import AuthenticationError, DecodeError, TrustError
from sealwire.identity import Identity
from sealwire.model import (
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
    TaskStatus,
)
from sealwire.transport.http import A2AHttpApp, HttpChannel, SseDecoder, encode_sse, serve_http

CALLER = Identity.generate().public
PEER = PeerIdentity(agent_id=CALLER.agent_id, identity=CALLER)
CARD = {"name": "http-test"}
SMALL_BODY = 4096


async def dispatch(request: Request, peer: PeerIdentity) -> AsyncIterator[Any]:
    assert peer == PEER
    if request.method.streaming:
        for state in (TaskState.WORKING, TaskState.COMPLETED):
            yield StreamResponse(task=Task(id="t", context_id="c",
                                           status=TaskStatus(state=state)))  # fmt: skip
        return
    if request.params.id == "missing":
        raise TaskNotFoundError("no such task")
    if request.params.id == "boom":
        raise RuntimeError("a handler bug")
    yield Task(id=request.params.id, context_id="c", status=TaskStatus(state=TaskState.WORKING))


async def identify(scope: Any, headers: Any) -> PeerIdentity:
    if "x-deny" in headers:
        raise TrustError("denied by the test")
    if "x-anonymous" in headers:
        raise AuthenticationError("a client certificate is required")
    return PEER


async def enroll(scope: Any, headers: Any, body: bytes) -> tuple[int, Any]:
    return 200, {"got": len(body)}


@pytest.fixture
async def url() -> AsyncIterator[str]:
    app = A2AHttpApp(dispatch, lambda: CARD, identify, routes={("POST", "/extra"): enroll},
                     response_headers=lambda s, h, p: {"X-Bound": "yes"},
                     max_body=SMALL_BODY)  # fmt: skip
    async with await serve_http(app, "http://127.0.0.1:0") as listener:
        yield listener.url


def rpc(method: str, params: dict[str, Any], id_: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}


STREAM = rpc("SendStreamingMessage", {"message": {"messageId": "m", "role": "ROLE_USER",
                                                  "parts": [{"text": "hi"}]}})  # fmt: skip


async def test_card_unary_errors_and_routes(url: str) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        assert (await http.get(url + "/.well-known/agent-card.json")).json() == CARD
        ok = await http.post(url, json=rpc("GetTask", {"id": "t1"}))
        assert ok.json()["result"]["id"] == "t1"
        assert ok.headers["x-bound"] == "yes" and ok.headers["a2a-version"] == "1.0"
        err = (await http.post(url, json=rpc("GetTask", {"id": "missing"}, 7))).json()
        assert err["id"] == 7 and err["error"]["code"] == -32001
        bug = (await http.post(url, json=rpc("GetTask", {"id": "boom"}))).json()
        assert bug["error"] == {"code": -32603, "message": "internal error", "data": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "INTERNAL_ERROR",
             "domain": "a2a-protocol.org", "metadata": {}}]}  # fmt: skip
        old = await http.post(url, json=rpc("GetTask", {"id": "t"}), headers={"A2A-Version": "9.0"})
        assert old.json()["error"]["code"] == -32009 and old.json()["id"] == 1
        assert (await http.post(url + "/extra", content=b"abc")).json() == {"got": 3}
        assert (await http.post(url + "/nowhere", json={})).status_code == 404
        assert (await http.get(url + "/")).status_code == 405


async def test_callers_refused_before_dispatch(url: str) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        denied = await http.post(url, json=rpc("GetTask", {"id": "t"}), headers={"X-Deny": "1"})
        assert denied.status_code == 403 and "denied" in denied.text
        anon = await http.post(url, json=rpc("GetTask", {"id": "t"}), headers={"X-Anonymous": "1"})
        assert anon.status_code == 403


async def test_stream_is_server_sent_events(url: str) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(url, json=STREAM)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(e.data) for e in SseDecoder().feed(response.content)]
    states = [e["result"]["task"]["status"]["state"] for e in events]
    assert states == ["TASK_STATE_WORKING", "TASK_STATE_COMPLETED"]


@pytest.mark.parametrize(
    "body", [b"", b"{", b"[]", b"\xff", b'{"jsonrpc":"2.0","id":1,"method":"No"}', b"1" * 5000]
)
async def test_hostile_bodies_get_json_rpc_errors(url: str, body: bytes) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        answer = await http.post(url, content=body)
    assert answer.status_code in (200, 413)
    assert answer.json()["error"]["code"] in (-32700, -32600, -32601, -32602)


async def _connection(url: str, **kwargs: Any) -> RpcConnection:
    channel = HttpChannel(httpx.AsyncClient(trust_env=False), url, PEER, **kwargs)
    conn = RpcConnection(channel, None)
    conn.start()
    return conn


async def test_rpc_connection_over_the_http_channel(url: str) -> None:
    conn = await _connection(url)
    try:
        task = await conn.call(Method.GET_TASK, GetTaskRequest(id="t9"))
        assert task.id == "t9"
        with pytest.raises(TaskNotFoundError):
            await conn.call(Method.GET_TASK, GetTaskRequest(id="missing"))
        message = Message(message_id="m", role=Role.USER, parts=(Part.from_text("m"),))
        events = [e async for e in conn.stream(Method.SEND_STREAMING_MESSAGE,
                                               SendMessageRequest(message=message))]  # fmt: skip
        assert [e.task.status.state for e in events] == [TaskState.WORKING, TaskState.COMPLETED]
    finally:
        await conn.close()
    with pytest.raises(ChannelClosed):
        await conn.channel.send(b"{}")


async def test_a_refused_or_unchecked_answer_fails_the_call(url: str) -> None:
    def reject(response: httpx.Response) -> None:
        raise AuthenticationError("channel binding invalid")

    conn = await _connection(url, headers={"X-Deny": "1"})
    with pytest.raises(A2AError, match="403"):
        await conn.call(Method.GET_TASK, GetTaskRequest(id="t"))
    await conn.close()
    conn = await _connection(url, check_response=reject)
    with pytest.raises(A2AError):
        await conn.call(Method.GET_TASK, GetTaskRequest(id="t"))
    await conn.closed.wait()  # the channel failed: nothing more is trusted on it


# -- Server-Sent Events ------------------------------------------------------------------------

datas = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=150, deadline=None)
@given(st.lists(datas, min_size=1, max_size=5), st.data())
def test_sse_round_trip_in_any_chunks(payloads: list[str], data: st.DataObject) -> None:
    wire = b"".join(encode_sse(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    decoder = SseDecoder()
    events = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        events += decoder.feed(wire[start:end])
    expected = [p.replace("\r\n", "\n").replace("\r", "\n") for p in payloads]
    assert [e.data for e in events] == expected


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_sse_arbitrary_bytes_give_events_or_decode_error(blob: bytes) -> None:
    decoder = SseDecoder(max_event=64)
    try:
        for i in range(len(blob)):
            for event in decoder.feed(blob[i : i + 1]):
                assert isinstance(event.data, str)
    except DecodeError:
        pass


def test_sse_fields_line_endings_and_limits() -> None:
    events = SseDecoder().feed(b": comment\r\nevent: update\rid: 3\ndata:a\r\ndata: b\n\ndata\n\n")
    assert [(e.event, e.id, e.data) for e in events] == [
        ("update", "3", "a\nb"),
        ("message", "3", ""),
    ]
    with pytest.raises(DecodeError):
        SseDecoder(max_event=8).feed(b"data: 0123456789\n\n")
    with pytest.raises(DecodeError):
        SseDecoder(max_event=8).feed(b"x" * 100)
    with pytest.raises(DecodeError):
        SseDecoder().feed(b"data: \xff\n\n")


async def hostile_server(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every POST wrongly, as the path says."""
    if scope["type"] != "http":
        return
    answers = {
        "/other-id": (200, b'{"jsonrpc":"2.0","id":999,"result":{}}', b"application/json"),
        "/not-json": (200, b"<html>", b"application/json"),
        "/server-error": (500, b"x" * 100_000, b"text/plain"),
        "/empty-stream": (200, b": nothing\n\n", b"text/event-stream"),
    }
    status, body, kind = answers[scope["path"]]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", kind)]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("path", ["/other-id", "/not-json", "/server-error", "/empty-stream"])
async def test_hostile_answers_fail_only_their_call(path: str) -> None:
    async with await serve_http(hostile_server, "http://127.0.0.1:0") as listener:
        conn = await _connection(listener.url + path)
        try:
            with pytest.raises(A2AError):
                if path == "/empty-stream":
                    message = Message(message_id="m", role=Role.USER, parts=(Part.from_text("m"),))
                    request = SendMessageRequest(message=message)
                    _ = [e async for e in conn.stream(Method.SEND_STREAMING_MESSAGE, request)]
                else:
                    await conn.call(Method.GET_TASK, GetTaskRequest(id="t"))
            assert not conn.closed.is_set()  # the channel survives a bad answer
        finally:
            await conn.close()
