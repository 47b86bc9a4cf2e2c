"""A2A v1.0 §11, the HTTP+JSON (REST) binding on the TLS binding's endpoint: listed in
the card, equivalent to JSON-RPC for the same request (§5.1), and used by an
unmodified a2a-sdk client picking it from the card."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from a2a_conformance import A2A, Https, Rest, message


@pytest.fixture
def https(a2a: A2A) -> A2A:
    if a2a.name != "https":
        pytest.skip("a case of the HTTPS endpoint itself")
    return a2a


def _endpoint(a2a: A2A) -> Https:
    carrier: Any = a2a._carrier
    assert isinstance(carrier, Https)
    return carrier


def _card_interfaces(card: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i["protocolBinding"], i["url"]) for i in card["supportedInterfaces"]]


async def test_the_card_lists_both_standard_bindings(https: A2A) -> None:
    endpoint = _endpoint(https)
    card = (await endpoint.http.get(endpoint.url + "/.well-known/agent-card.json")).json()
    bindings = _card_interfaces(card)
    assert ("JSONRPC", endpoint.url) in bindings and ("HTTP+JSON", endpoint.url) in bindings


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


async def test_the_same_request_gives_equivalent_answers(https: A2A) -> None:
    """§5.1 functional equivalence: each request over JSON-RPC and over REST."""
    endpoint = _endpoint(https)
    rest = A2A("rest", https.agent, Rest(endpoint.http, endpoint.url), https.gate)
    for text in ("abc", "hi", "ask"):
        by_rpc = await https.result("SendMessage", {"message": message(text)})
        by_rest = await rest.result("SendMessage", {"message": message(text)})
        assert _same_shape(by_rpc) == _same_shape(by_rest)
    task = await https.send("xyz")
    for method, params in [
        ("GetTask", {"id": task["id"]}),
        ("GetTask", {"id": task["id"], "historyLength": 1}),
        ("ListTasks", {"pageSize": 2, "includeArtifacts": True}),
        ("ListTasks", {"status": "TASK_STATE_INPUT_REQUIRED"}),
    ]:
        assert await https.result(method, params) == await rest.result(method, params)
    for method, params in [
        ("GetTask", {"id": "no-such-task"}),
        ("CancelTask", {"id": task["id"]}),
        ("ListTasks", {"pageSize": 0}),
        ("GetExtendedAgentCard", {}),
        ("CreateTaskPushNotificationConfig", {"taskId": task["id"], "url": "https://10.0.0.1/"}),
        ("GetTaskPushNotificationConfig", {"taskId": task["id"], "id": "no-such-config"}),
    ]:
        assert await https.error(method, params) == await rest.error(method, params)
    streamed = [await a2a_stream(x, "abc") for x in (https, rest)]
    assert _same_shape(streamed[0]) == _same_shape(streamed[1])


async def a2a_stream(a2a: A2A, text: str) -> list[dict[str, Any]]:
    events = await a2a.stream("SendStreamingMessage", {"message": message(text)})
    return [event["result"] for event in events]


async def test_an_unmodified_a2a_sdk_client_over_http_json(https: A2A) -> None:
    from a2a.client import ClientConfig, ClientFactory
    from a2a.client.card_resolver import parse_agent_card
    from a2a.helpers.proto_helpers import new_text_message
    from a2a.types import (
        CancelTaskRequest,
        GetTaskRequest,
        ListTasksRequest,
        Role,
        SendMessageRequest,
        SubscribeToTaskRequest,
        TaskState,
    )
    from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError

    endpoint = _endpoint(https)
    card = (await endpoint.http.get(endpoint.url + "/.well-known/agent-card.json")).json()
    for streaming in (False, True):
        config = ClientConfig(
            streaming=streaming,
            httpx_client=endpoint.http,
            supported_protocol_bindings=["HTTP+JSON"],
        )
        client = ClientFactory(config).create(parse_agent_card(copy.deepcopy(card)))
        request = SendMessageRequest(message=new_text_message("sdk", role=Role.ROLE_USER))
        events = [event async for event in client.send_message(request)]
        task_id = next(e.task.id for e in events if e.HasField("task"))
        task = await client.get_task(GetTaskRequest(id=task_id))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert task.artifacts[0].parts[0].text == "SDK"
        page = await client.list_tasks(ListTasksRequest(page_size=1))
        assert page.total_size == 1 + streaming and len(page.tasks) == 1
        with pytest.raises(TaskNotCancelableError):
            await client.cancel_task(CancelTaskRequest(id=task_id))
        if streaming:  # the SDK subscribes only with streaming on
            with pytest.raises(TaskNotFoundError):
                async for _ in client.subscribe(SubscribeToTaskRequest(id="no-such-task")):
                    pass
