"""A2A v1.0 §9, the JSON-RPC binding over HTTP (the TLS binding's endpoint and a
sidecar's local endpoint): streaming answers, errors of streaming methods, and an
unmodified a2a-sdk client."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a_conformance import A2A, TRANSPORTS, client_context, message

from sealwire.identity import Identity


def test_every_transport_is_tried() -> None:
    assert TRANSPORTS == ("https", "rest", "noise", "mailbox", "sidecar")


@pytest.fixture
def https(a2a: A2A) -> A2A:
    if a2a.name != "https":
        pytest.skip("a case of the TLS binding's endpoint itself")
    return a2a


@pytest.fixture
def http(a2a: A2A) -> A2A:
    if a2a.name not in ("https", "sidecar"):
        pytest.skip("a case of the JSON-RPC binding over HTTP")
    return a2a


async def _events(a2a: A2A, method: str, params: Any) -> list[tuple[str, dict[str, Any]]]:
    """(SSE event type, data) of a streaming call, read off the wire."""
    body = {"jsonrpc": "2.0", "id": 3, "method": method, "params": params}
    carrier: Any = a2a._carrier
    answer = await carrier.http.post(carrier.url, json=body)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    out = []
    for block in answer.text.split("\n\n"):
        if block.strip():
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            out.append((fields.get("event", "message"), json.loads(fields["data"])))
    return out


class TestStreamingOverHttp:
    """§9.4.2 / §9.4.6: streams are Server-Sent Events; so are their errors (as
    a2a-sdk's own server sends them: an ``error`` event holding the error response)."""

    async def test_events(self, http: A2A) -> None:
        events = await _events(http, "SendStreamingMessage", {"message": message("abc")})
        assert {kind for kind, _ in events} == {"message"}
        assert all(data["id"] == 3 and "result" in data for _, data in events)

    async def test_errors(self, http: A2A) -> None:
        events = await _events(http, "SubscribeToTask", {"id": "no-such-task"})
        assert [(kind, data["error"]["code"]) for kind, data in events] == [("error", -32001)]


async def test_a2a_sdk_streaming_client_gets_the_error(http: A2A) -> None:
    """An unmodified a2a-sdk client (JSONRPC binding, from the served card) raises the
    error a streaming method answers with."""
    from a2a.client import ClientConfig, ClientFactory
    from a2a.client.card_resolver import parse_agent_card
    from a2a.types import SubscribeToTaskRequest
    from a2a.utils.errors import TaskNotFoundError

    carrier: Any = http._carrier
    card = (await carrier.http.get(carrier.url + "/.well-known/agent-card.json")).json()
    config = ClientConfig(
        streaming=True, httpx_client=carrier.http, supported_protocol_bindings=["JSONRPC"]
    )
    client = ClientFactory(config).create(parse_agent_card(copy.deepcopy(card)))
    with pytest.raises(TaskNotFoundError):
        async for _ in client.subscribe(SubscribeToTaskRequest(id="no-such-task")):
            pass


async def test_a_stranger_is_refused_over_http(https: A2A, tmp_path: Path) -> None:
    """Refusing the caller is the only HTTP-level answer (403), never an A2A error."""
    ctx = client_context(https.agent, Identity.generate(), tmp_path)
    carrier: Any = https._carrier
    async with httpx.AsyncClient(verify=ctx, trust_env=False) as http:
        with pytest.raises(httpx.TransportError):  # not a trust anchor: no handshake
            await http.post(carrier.url, json={"jsonrpc": "2.0", "id": 1, "method": "ListTasks"})
