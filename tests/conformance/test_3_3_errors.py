"""A2A v1.0 §3.3.2 (error handling) and §9.5 (JSON-RPC errors): every code this agent
can answer with, for the same fault on every transport."""

from __future__ import annotations

from typing import Any

import pytest
from a2a_conformance import A2A

from sealwire.agent import PushPolicy

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


class TestJsonRpcErrors:
    """§9.5: the standard JSON-RPC codes."""

    async def test_method_not_found(self, a2a: A2A) -> None:
        assert await a2a.error("NoSuchMethod", {}) == -32601

    @pytest.mark.parametrize(
        "body",
        [
            {"jsonrpc": "1.0", "id": 99, "method": "GetTask", "params": {"id": "x"}},
            {"jsonrpc": "2.0", "id": 99, "params": {"id": "x"}},
            {"jsonrpc": "2.0", "id": 99, "method": 5, "params": {"id": "x"}},
        ],
        ids=["version", "no-method", "method-not-text"],
    )
    async def test_invalid_request(self, a2a: A2A, body: dict[str, Any]) -> None:
        answer = await a2a.raw(body)
        assert answer["error"]["code"] == -32600 and answer["id"] == 99

    @pytest.mark.parametrize("params", [[1, 2], "x", {"id": 5}, {"id": ["x"]}])
    async def test_invalid_params(self, a2a: A2A, params: Any) -> None:
        assert await a2a.error("GetTask", params) == -32602

    async def test_the_field_at_fault_is_named(self, a2a: A2A) -> None:
        bad = {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": 5}]}}
        answer = await a2a.call("SendMessage", bad)
        assert "message.parts[0].text" in answer["error"]["message"]
        # §9.5: and in a google.rpc.BadRequest of the error's details
        (bad_request,) = [d for d in answer["error"]["data"] if d["@type"] == BAD_REQUEST]
        assert [v["field"] for v in bad_request["fieldViolations"]] == [
            "params.message.parts[0].text"
        ]


class TestErrorDetails:
    """§9.5: an error's ``data`` is its details, each with an ``@type``; A2A's
    ``google.rpc.ErrorInfo`` gives the §5.4 reason in the ``a2a-protocol.org`` domain."""

    @pytest.mark.parametrize(
        ("method", "params", "reason"),
        [
            ("GetTask", {"id": "no-such-task"}, "TASK_NOT_FOUND"),
            ("NoSuchMethod", {}, "METHOD_NOT_FOUND"),
            ("GetTask", {"id": 5}, "INVALID_PARAMS"),
        ],
    )
    async def test_error_info(self, a2a: A2A, method: str, params: Any, reason: str) -> None:
        data = (await a2a.call(method, params))["error"]["data"]
        assert all(isinstance(d, dict) and isinstance(d.get("@type"), str) for d in data)
        (info,) = [d for d in data if d["@type"] == ERROR_INFO]
        assert (info["reason"], info["domain"]) == (reason, "a2a-protocol.org")


class TestA2AErrors:
    """§3.3.2: the A2A codes, each from the fault that raises it."""

    async def test_task_not_found(self, a2a: A2A) -> None:
        assert await a2a.error("GetTask", {"id": "no-such-task"}) == -32001

    async def test_task_not_cancelable(self, a2a: A2A) -> None:
        task = await a2a.send("x")
        assert await a2a.error("CancelTask", {"id": task["id"]}) == -32002

    async def test_push_notification_not_supported(
        self, a2a: A2A, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # a policy that forbids calling out: -32003, with the policy's reason
        task = await a2a.send("x")
        policy = PushPolicy(enabled=False, reason="no calls out from here")
        monkeypatch.setattr(a2a.agent.push, "policy", policy)
        params = {"taskId": task["id"], "url": "https://example.com/hook"}
        answer = await a2a.call("CreateTaskPushNotificationConfig", params)
        assert answer["error"]["code"] == -32003
        assert "no calls out from here" in answer["error"]["message"]

    async def test_unsupported_operation(self, a2a: A2A) -> None:
        task = await a2a.send("x")
        late = {"message": {"messageId": "m2", "role": "ROLE_USER", "parts": [{"text": "y"}],
                            "taskId": task["id"]}}  # fmt: skip
        assert await a2a.error("SendMessage", late) == -32004

    async def test_version_not_supported(self, a2a: A2A) -> None:
        assert await a2a.error("ListTasks", {}, {"A2A-Version": "2.0"}) == -32009

    @pytest.mark.parametrize("task_id", ["", "x" * 1025, "a\x00b", "a\nb"])
    @pytest.mark.parametrize("method", ["GetTask", "CancelTask"])
    async def test_task_ids_are_checked_before_the_store(
        self, a2a: A2A, method: str, task_id: str
    ) -> None:
        assert await a2a.error(method, {"id": task_id}) == -32602

    @pytest.mark.parametrize("task_id", ["", "x" * 1025, "a\x00b"])
    async def test_task_ids_of_a_subscription(self, a2a: A2A, task_id: str) -> None:
        events = await a2a.stream("SubscribeToTask", {"id": task_id})
        assert [event["error"]["code"] for event in events] == [-32602]
