"""A2A v1.0 §3.1, the core operations: every method, its answers and its errors, the
same over each transport (the ``a2a`` fixture runs each case on HTTPS, Noise and a
mailbox)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from a2a_conformance import A2A, TERMINAL, message
from waiting import until

NOW = {"returnImmediately": True}


def _states(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for event in events:
        result = event["result"]
        if "task" in result:
            out.append("task:" + result["task"]["status"]["state"])
        elif "statusUpdate" in result:
            out.append(result["statusUpdate"]["status"]["state"])
        elif "artifactUpdate" in result:
            out.append("artifact")
        else:
            out.append("message")
    return out


class TestSendMessage:
    """§3.1.1: the task (blocking until it ends or is interrupted) or a reply message."""

    async def test_answers_with_the_finished_task(self, a2a: A2A) -> None:
        task = await a2a.send("abc")
        assert task["status"]["state"] == "TASK_STATE_COMPLETED"
        assert task["id"] and task["contextId"]
        assert task["artifacts"][0]["parts"] == [{"text": "ABC"}]
        assert task["history"][0]["parts"] == [{"text": "abc"}]

    async def test_a_reply_message_instead_of_a_task(self, a2a: A2A) -> None:
        result = await a2a.result("SendMessage", {"message": message("hi")})
        assert list(result) == ["message"]
        assert result["message"]["role"] == "ROLE_AGENT"
        assert result["message"]["parts"] == [{"text": "hello"}]

    async def test_waits_for_an_interrupted_state(self, a2a: A2A) -> None:
        task = await a2a.send("ask me")
        assert task["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"
        assert task["status"]["message"]["parts"] == [{"text": "more?"}]

    async def test_a_failing_handler_fails_the_task(self, a2a: A2A) -> None:
        task = await a2a.send("fail")
        assert task["status"]["state"] == "TASK_STATE_FAILED"

    async def test_the_context_is_kept(self, a2a: A2A) -> None:
        task = await a2a.send("x", contextId="ctx-1")
        assert task["contextId"] == "ctx-1"

    async def test_a_terminal_task_takes_no_message(self, a2a: A2A) -> None:
        task = await a2a.send("x")
        late = {"message": message("again", taskId=task["id"])}
        assert await a2a.error("SendMessage", late) == -32004

    async def test_an_unknown_task_id_is_not_found(self, a2a: A2A) -> None:
        params = {"message": message("x", taskId="no-such-task")}
        assert await a2a.error("SendMessage", params) == -32001

    @pytest.mark.parametrize(
        "params",
        [
            {},
            {"message": {"messageId": "m", "role": "ROLE_USER", "parts": []}},
            {"message": {"messageId": "m", "role": "ROLE_USER"}},
            {"message": {"role": "ROLE_USER", "parts": [{"text": "x"}]}},
            {"message": {"messageId": "m", "parts": [{"text": "x"}]}},
            {"message": {"messageId": "m", "role": "ROLE_NOBODY", "parts": [{"text": "x"}]}},
            {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{}]}},
            {
                "message": {
                    "messageId": "m",
                    "role": "ROLE_USER",
                    "parts": [{"text": "x", "url": "https://x"}],
                }
            },
            {"message": message("x"), "configuration": {"historyLength": "many"}},
        ],
        ids=[
            "no-message",
            "empty-parts",
            "no-parts",
            "no-id",
            "no-role",
            "bad-role",
            "empty-part",
            "two-contents",
            "bad-config",
        ],
    )
    async def test_invalid_params(self, a2a: A2A, params: dict[str, Any]) -> None:
        assert await a2a.error("SendMessage", params) == -32602


class TestSendStreamingMessage:
    """§3.1.2: the task first, then its updates; the stream ends with the task."""

    async def test_task_then_updates(self, a2a: A2A) -> None:
        events = await a2a.stream("SendStreamingMessage", {"message": message("abc")})
        states = _states(events)
        assert states[0] == "task:TASK_STATE_SUBMITTED"
        assert states[-1] == "TASK_STATE_COMPLETED"
        assert "artifact" in states
        task_id = events[0]["result"]["task"]["id"]
        for event in events[1:]:
            update = event["result"].get("statusUpdate") or event["result"]["artifactUpdate"]
            assert update["taskId"] == task_id
            assert update["contextId"] == events[0]["result"]["task"]["contextId"]

    async def test_a_reply_message_is_the_whole_stream(self, a2a: A2A) -> None:
        events = await a2a.stream("SendStreamingMessage", {"message": message("hi")})
        assert _states(events) == ["message"]

    async def test_an_interrupted_task_ends_the_stream(self, a2a: A2A) -> None:
        events = await a2a.stream("SendStreamingMessage", {"message": message("ask")})
        assert _states(events)[-1] == "TASK_STATE_INPUT_REQUIRED"

    async def test_invalid_params(self, a2a: A2A) -> None:
        assert await a2a.error("SendStreamingMessage", {"message": {"parts": []}}) == -32602


class TestGetTask:
    """§3.1.3: the task as it is now, history cut to ``historyLength`` (§3.2.4)."""

    async def test_the_task_as_it_is(self, a2a: A2A) -> None:
        task = await a2a.send("abc")
        got = await a2a.result("GetTask", {"id": task["id"]})
        assert got == task

    @pytest.mark.parametrize("length", [0, 1, 5])
    async def test_history_length(self, a2a: A2A, length: int) -> None:
        task = await a2a.send("abc")
        full = len(task["history"])
        got = await a2a.result("GetTask", {"id": task["id"], "historyLength": length})
        assert len(got.get("history", [])) == min(length, full)
        if length:
            assert got["history"] == task["history"][-length:]

    async def test_unknown_and_invalid(self, a2a: A2A) -> None:
        assert await a2a.error("GetTask", {"id": "no-such-task"}) == -32001
        task = await a2a.send("abc")
        assert await a2a.error("GetTask", {"id": task["id"], "historyLength": -1}) == -32602
        assert await a2a.error("GetTask", {}) == -32602


class TestListTasks:
    """§3.1.4: pages of the caller's tasks, newest first, filtered; every field present."""

    async def test_an_empty_page_is_whole(self, a2a: A2A) -> None:
        assert await a2a.result("ListTasks", {}) == {
            "tasks": [],
            "nextPageToken": "",
            "pageSize": 50,
            "totalSize": 0,
        }

    async def test_pages(self, a2a: A2A) -> None:
        made = {(await a2a.send(f"t{i}"))["id"] for i in range(3)}
        first = await a2a.result("ListTasks", {"pageSize": 2})
        assert (len(first["tasks"]), first["pageSize"], first["totalSize"]) == (2, 2, 3)
        assert first["nextPageToken"]
        rest = await a2a.result("ListTasks", {"pageSize": 2, "pageToken": first["nextPageToken"]})
        assert (len(rest["tasks"]), rest["nextPageToken"], rest["totalSize"]) == (1, "", 3)
        assert {t["id"] for t in first["tasks"] + rest["tasks"]} == made
        stamps = [t["status"]["timestamp"] for t in first["tasks"] + rest["tasks"]]
        assert stamps == sorted(stamps, reverse=True)

    async def test_filters(self, a2a: A2A) -> None:
        done = await a2a.send("x", contextId="ctx-a")
        asking = await a2a.send("ask", contextId="ctx-b")

        async def ids(params: dict[str, Any]) -> list[str]:
            return [t["id"] for t in (await a2a.result("ListTasks", params))["tasks"]]

        assert await ids({"contextId": "ctx-a"}) == [done["id"]]
        assert await ids({"status": "TASK_STATE_INPUT_REQUIRED"}) == [asking["id"]]
        assert await ids({"statusTimestampAfter": asking["status"]["timestamp"]}) == [asking["id"]]
        assert await ids({"statusTimestampAfter": "2999-01-01T00:00:00Z"}) == []

    async def test_artifacts_only_when_asked(self, a2a: A2A) -> None:
        await a2a.send("x")
        plain = await a2a.result("ListTasks", {})
        assert "artifacts" not in plain["tasks"][0]
        full = await a2a.result("ListTasks", {"includeArtifacts": True, "historyLength": 1})
        assert full["tasks"][0]["artifacts"][0]["parts"] == [{"text": "X"}]
        assert len(full["tasks"][0]["history"]) == 1

    @pytest.mark.parametrize(
        "params",
        [
            {"pageSize": 0},
            {"pageSize": -1},
            {"pageSize": 101},
            {"pageToken": "garbage!"},
            {"historyLength": -1},
            {"status": "TASK_STATE_NONSENSE"},
            {"statusTimestampAfter": "yesterday"},
        ],
    )
    async def test_invalid_params(self, a2a: A2A, params: dict[str, Any]) -> None:
        assert await a2a.error("ListTasks", params) == -32602


class TestCancelTask:
    """§3.1.5: an open task ends CANCELED; a finished one is not cancelable."""

    async def test_cancels_an_open_task(self, a2a: A2A) -> None:
        task = await a2a.send("slow", configuration=NOW)
        canceled = await a2a.result("CancelTask", {"id": task["id"]})
        assert canceled["status"]["state"] == "TASK_STATE_CANCELED"
        assert (await a2a.result("GetTask", {"id": task["id"]}))["status"][
            "state"
        ] == "TASK_STATE_CANCELED"

    async def test_errors(self, a2a: A2A) -> None:
        task = await a2a.send("x")
        assert await a2a.error("CancelTask", {"id": task["id"]}) == -32002
        assert await a2a.error("CancelTask", {"id": "no-such-task"}) == -32001


class TestSubscribeToTask:
    """§3.1.6: the task, then its updates until it ends; errors inside the stream."""

    async def test_follows_an_open_task_to_its_end(self, a2a: A2A) -> None:
        task = await a2a.send("slow", configuration=NOW)
        run = a2a.agent.tasks._runs[task["id"]]
        before = len(run.subscribers)
        watching = asyncio.create_task(a2a.stream("SubscribeToTask", {"id": task["id"]}))
        await until(lambda: len(run.subscribers) > before or watching.done(), "a subscriber")
        a2a.gate.set()
        events = await watching
        states = _states(events)
        assert states[0] in ("task:TASK_STATE_SUBMITTED", "task:TASK_STATE_WORKING")
        assert states[-1] == "TASK_STATE_COMPLETED" and "artifact" in states

    async def test_an_interrupted_task_is_shown_and_the_stream_ends(self, a2a: A2A) -> None:
        task = await a2a.send("ask")
        events = await a2a.stream("SubscribeToTask", {"id": task["id"]})
        assert _states(events) == ["task:TASK_STATE_INPUT_REQUIRED"]

    async def test_errors(self, a2a: A2A) -> None:
        unknown = await a2a.stream("SubscribeToTask", {"id": "no-such-task"})
        assert [e["error"]["code"] for e in unknown] == [-32001]
        task = await a2a.send("x")
        over = await a2a.stream("SubscribeToTask", {"id": task["id"]})
        assert [e["error"]["code"] for e in over] == [-32004]


class TestPushNotificationConfigs:
    """§3.1.7-3.1.10: not supported by this agent (its card says so): -32003."""

    @pytest.mark.parametrize(
        ("method", "params"),
        [
            ("CreateTaskPushNotificationConfig", {"taskId": "t", "url": "https://x/hook"}),
            ("GetTaskPushNotificationConfig", {"taskId": "t", "id": "c"}),
            ("ListTaskPushNotificationConfigs", {"taskId": "t"}),
            ("DeleteTaskPushNotificationConfig", {"taskId": "t", "id": "c"}),
        ],
    )
    async def test_unsupported(self, a2a: A2A, method: str, params: dict[str, Any]) -> None:
        assert not a2a.agent.card.card["capabilities"].get("pushNotifications")
        assert await a2a.error(method, params) == -32003


class TestGetExtendedAgentCard:
    """§3.1.11 and §3.3.4: a card declaring no extended card answers -32004."""

    async def test_undeclared(self, a2a: A2A) -> None:
        assert not a2a.agent.card.card["capabilities"].get("extendedAgentCard")
        assert await a2a.error("GetExtendedAgentCard", {}) == -32004


def test_terminal_states_are_the_specifications() -> None:
    assert {
        "TASK_STATE_COMPLETED",
        "TASK_STATE_FAILED",
        "TASK_STATE_CANCELED",
        "TASK_STATE_REJECTED",
    } == TERMINAL
