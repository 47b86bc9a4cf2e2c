"""A2A v1.0 to the letter over the HTTPS endpoint (issue 24): ListTasks, required fields,
task ids, the extended card, errors of streaming methods, non-blocking sends.

Each test calls a served agent over loopback mutual TLS, as an external client
(curl, a2a-sdk) would: a pinned client certificate, plain JSON-RPC bodies.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from sealwire.agent import Agent, TaskContext
from sealwire.identity import Identity
from sealwire_tls import self_signed_certificate
from sealwire_tls.testing import export_client_files, tls_agent

TERMINAL = {"TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELED",
            "TASK_STATE_REJECTED"}  # fmt: skip
POLLS = 400
"""GetTask calls (50 ms apart) before a test gives up waiting for a task to end."""


@attrs.frozen
class Endpoint:
    agent: Agent
    url: str
    http: httpx.AsyncClient
    gate: asyncio.Event

    async def rpc(self, method: str, params: Any) -> dict[str, Any]:
        """One JSON-RPC call; the HTTP answer must be JSON-RPC (200, application/json)."""
        body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
        answer = await self.http.post(self.url, json=body)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        data: dict[str, Any] = answer.json()
        assert data["id"] == 7
        return data

    async def send(self, text: str, **extra: Any) -> dict[str, Any]:
        message = {"messageId": f"m-{text}", "role": "ROLE_USER", "parts": [{"text": text}]}
        answer = await self.rpc("SendMessage", {"message": {**message, **extra}})
        task: dict[str, Any] = answer["result"]["task"]
        return task

    async def ended(self, task_id: str) -> dict[str, Any]:
        """The task once GetTask shows it in a terminal state (polled)."""
        for _ in range(POLLS):
            task: dict[str, Any] = (await self.rpc("GetTask", {"id": task_id}))["result"]
            if task["status"]["state"] in TERMINAL:
                return task
            await asyncio.sleep(0.05)
        raise AssertionError(f"task {task_id} did not end")


def _handler(gate: asyncio.Event) -> Callable[[TaskContext], Awaitable[None]]:
    async def handle(task: TaskContext) -> None:
        text = task.message.parts[0].text or ""
        if text.startswith("ask"):
            await task.require_input("more?")
            return
        if text == "slow":
            await gate.wait()
        if text == "chat":  # stays open, echoing follow-ups until "bye"
            await task.working("listening")
            while (follow := (await task.next_message()).parts[0].text or "") != "bye":
                await task.artifact(follow.upper(), name="echo")
            await task.complete("bye")
            return
        await task.artifact(text.upper(), name="upper")
        await task.complete("done")

    return handle


def client_context(agent: Agent, client: Identity, folder: Path) -> ssl.SSLContext:
    """An external client's TLS context: its certificate, the server's pinned."""
    cert, key, server_pem = export_client_files(
        client, folder, self_signed_certificate(agent.identity)
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=server_pem)
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[Endpoint]:
    client = Identity.generate()
    allowed = tmp_path / "allowed.pem"
    allowed.write_bytes(self_signed_certificate(client).public_bytes(serialization.Encoding.PEM))
    agent = tls_agent("spec", options={"client_certificates": [str(allowed)]})
    gate = asyncio.Event()
    agent.on_message(_handler(gate))
    async with agent:
        agent.trust.pin(client.public)
        ctx = client_context(agent, client, tmp_path)
        async with httpx.AsyncClient(verify=ctx, trust_env=False) as http:
            yield Endpoint(agent, agent.card.offers[0].url or "", http, gate)


def _error(answer: dict[str, Any]) -> int:
    assert "result" not in answer, answer
    code: int = answer["error"]["code"]
    return code


# -- ListTasks (spec §3.1.4) -------------------------------------------------------------------


async def test_an_empty_list_has_every_required_field(endpoint: Endpoint) -> None:
    answer = await endpoint.rpc("ListTasks", {})
    assert answer["result"] == {"tasks": [], "nextPageToken": "", "pageSize": 50, "totalSize": 0}


@pytest.mark.parametrize(
    "params",
    [
        {"pageSize": 0},
        {"pageSize": -1},
        {"pageSize": 101},
        {"pageToken": "garbage!"},
        {"pageToken": "bm90IGpzb24"},
        {"historyLength": -1},
    ],
)
async def test_list_parameters_are_validated(endpoint: Endpoint, params: dict[str, Any]) -> None:
    assert _error(await endpoint.rpc("ListTasks", params)) == -32602


async def test_list_pages_through_every_task_newest_first(endpoint: Endpoint) -> None:
    made = [(await endpoint.send(f"t{i}"))["id"] for i in range(5)]
    seen: list[str] = []
    token = ""
    sizes = []
    while True:
        params: dict[str, Any] = {"pageSize": 2} | ({"pageToken": token} if token else {})
        page = (await endpoint.rpc("ListTasks", params))["result"]
        assert page["totalSize"] == 5 and page["pageSize"] == 2
        sizes.append(len(page["tasks"]))
        seen += [task["id"] for task in page["tasks"]]
        token = page["nextPageToken"]
        if not token:
            break
    assert sizes == [2, 2, 1]
    assert sorted(seen) == sorted(made) and len(set(seen)) == 5
    stamps = [
        t["status"]["timestamp"] for t in (await endpoint.rpc("ListTasks", {}))["result"]["tasks"]
    ]
    assert stamps == sorted(stamps, reverse=True)


async def test_list_filters_and_shapes_tasks(endpoint: Endpoint) -> None:
    done = await endpoint.send("one")
    waiting = await endpoint.send("ask one", contextId="ctx-b")
    assert waiting["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"

    async def ids(params: dict[str, Any]) -> list[str]:
        page = (await endpoint.rpc("ListTasks", params))["result"]
        assert page["totalSize"] == len(page["tasks"])
        return [task["id"] for task in page["tasks"]]

    assert await ids({"status": "TASK_STATE_INPUT_REQUIRED"}) == [waiting["id"]]
    assert await ids({"status": "TASK_STATE_COMPLETED"}) == [done["id"]]
    assert await ids({"contextId": "ctx-b"}) == [waiting["id"]]
    assert await ids({"statusTimestampAfter": waiting["status"]["timestamp"]}) == [waiting["id"]]
    assert await ids({"statusTimestampAfter": "2999-01-01T00:00:00Z"}) == []
    # artifacts only when asked for; history cut to historyLength
    plain = (await endpoint.rpc("ListTasks", {"status": "TASK_STATE_COMPLETED"}))["result"]
    assert "artifacts" not in plain["tasks"][0] and len(plain["tasks"][0]["history"]) == 2
    shaped = {"includeArtifacts": True, "historyLength": 0, "status": "TASK_STATE_COMPLETED"}
    full = (await endpoint.rpc("ListTasks", shaped))["result"]
    assert full["tasks"][0]["artifacts"][0]["parts"] == [{"text": "ONE"}]
    assert "history" not in full["tasks"][0]


# -- required arrays (spec §5.7) ---------------------------------------------------------------


@pytest.mark.parametrize("parts", [{"parts": []}, {}])
async def test_a_message_needs_parts(endpoint: Endpoint, parts: dict[str, Any]) -> None:
    message = {"messageId": "m", "role": "ROLE_USER"} | parts
    answer = await endpoint.rpc("SendMessage", {"message": message})
    assert _error(answer) == -32602
    assert endpoint.agent.tasks.store.keys("a2a.tasks") == []


# -- task ids are checked before the store -----------------------------------------------------

BAD_IDS = ["", "x" * 1025, "a\x00b"]


@pytest.mark.parametrize("task_id", BAD_IDS, ids=["empty", "long", "nul"])
@pytest.mark.parametrize("method", ["GetTask", "CancelTask"])
async def test_bad_task_ids_are_invalid_params(
    endpoint: Endpoint, method: str, task_id: str
) -> None:
    assert _error(await endpoint.rpc(method, {"id": task_id})) == -32602


@pytest.mark.parametrize("task_id", BAD_IDS, ids=["empty", "long", "nul"])
async def test_bad_task_ids_in_a_subscription_or_message(endpoint: Endpoint, task_id: str) -> None:
    events = await _sse(endpoint, "SubscribeToTask", {"id": task_id})
    assert [(kind, data["error"]["code"]) for kind, data in events] == [("error", -32602)]
    message = {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x"}], "taskId": task_id}
    answer = await endpoint.rpc("SendMessage", {"message": message})
    if task_id:  # "" is no task id at all (proto3): a new task
        assert _error(answer) == -32602


# -- the extended card (spec §3.3.4) -----------------------------------------------------------


async def test_an_undeclared_extended_card_is_unsupported(endpoint: Endpoint) -> None:
    assert not endpoint.agent.card.card["capabilities"].get("extendedAgentCard")
    assert _error(await endpoint.rpc("GetExtendedAgentCard", {})) == -32004


# -- errors of streaming methods ---------------------------------------------------------------


async def _sse(endpoint: Endpoint, method: str, params: Any) -> list[tuple[str, Any]]:
    """(event type, JSON data) of each event of a streaming call's answer."""
    body = {"jsonrpc": "2.0", "id": 8, "method": method, "params": params}
    answer = await endpoint.http.post(endpoint.url, json=body)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream"), answer.text
    events = []
    for block in answer.text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields.get("event", "message"), json.loads(fields["data"])))
    return events


async def test_streaming_errors_come_in_the_event_stream(endpoint: Endpoint) -> None:
    events = await _sse(endpoint, "SubscribeToTask", {"id": "no-such-task"})
    assert [(kind, data["error"]["code"]) for kind, data in events] == [("error", -32001)]
    assert events[0][1]["id"] == 8
    done = await endpoint.send("over")
    events = await _sse(endpoint, "SubscribeToTask", {"id": done["id"]})
    assert [(kind, data["error"]["code"]) for kind, data in events] == [("error", -32004)]


# -- non-blocking sends and open tasks (spec §3.2.2, §3.4.3) -----------------------------------

NOW = {"configuration": {"returnImmediately": True}}


def _message(text: str, **extra: Any) -> dict[str, Any]:
    return {"messageId": f"m-{text}", "role": "ROLE_USER", "parts": [{"text": text}], **extra}


async def test_return_immediately_answers_before_the_task_ends(endpoint: Endpoint) -> None:
    answer = await endpoint.rpc("SendMessage", {"message": _message("slow")} | NOW)
    task = answer["result"]["task"]
    assert task["status"]["state"] in ("TASK_STATE_SUBMITTED", "TASK_STATE_WORKING")
    assert (await endpoint.rpc("GetTask", {"id": task["id"]}))["result"]["status"][
        "state"
    ] not in TERMINAL
    endpoint.gate.set()
    done = await endpoint.ended(task["id"])
    assert done["status"]["state"] == "TASK_STATE_COMPLETED"
    assert done["artifacts"][0]["parts"] == [{"text": "SLOW"}]


async def test_an_open_task_takes_follow_up_messages(endpoint: Endpoint) -> None:
    task = (await endpoint.rpc("SendMessage", {"message": _message("chat")} | NOW))["result"][
        "task"
    ]
    for word in ("one", "two"):
        follow = _message(word, taskId=task["id"])
        answer = (await endpoint.rpc("SendMessage", {"message": follow} | NOW))["result"]["task"]
        assert answer["id"] == task["id"] and answer["status"]["state"] not in TERMINAL
    # the context is inferred from the task; a blocking send waits for the end
    bye = _message("bye", taskId=task["id"], contextId=task["contextId"])
    done = (await endpoint.rpc("SendMessage", {"message": bye}))["result"]["task"]
    assert done["status"]["state"] == "TASK_STATE_COMPLETED"
    assert [a["parts"][0]["text"] for a in done["artifacts"]] == ["ONE", "TWO"]
    users = [m["parts"][0]["text"] for m in done["history"] if m["role"] == "ROLE_USER"]
    assert users == ["chat", "one", "two", "bye"]
    assert all(m.get("contextId") == task["contextId"] for m in done["history"])


async def test_follow_ups_that_cannot_be_taken(endpoint: Endpoint) -> None:
    done = await endpoint.send("over")
    late = await endpoint.rpc("SendMessage", {"message": _message("late", taskId=done["id"])})
    assert _error(late) == -32004  # terminal tasks take no messages (spec §3.1.1)
    unknown = await endpoint.rpc("SendMessage", {"message": _message("x", taskId="nope")})
    assert _error(unknown) == -32001
    task = (await endpoint.rpc("SendMessage", {"message": _message("chat")} | NOW))["result"][
        "task"
    ]
    other = _message("x", taskId=task["id"], contextId="another-context")
    assert _error(await endpoint.rpc("SendMessage", {"message": other})) == -32602
    await endpoint.rpc("SendMessage", {"message": _message("bye", taskId=task["id"])})
