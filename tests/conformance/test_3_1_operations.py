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
        await asyncio.sleep(0.005)  # timestamps have milliseconds: the next one is later
        asking = await a2a.send("ask", contextId="ctx-b")
        assert asking["status"]["timestamp"] > done["status"]["timestamp"]

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


HOOK = "https://hooks.example/a2a"
"""A webhook URL the configs name: a host name, checked when a call is made (none is
made here: these tasks have ended when their configs are set)."""


class TestPushNotificationConfigs:
    """§3.1.7-3.1.10: the card says push notifications are supported; configs are
    created, read, listed and deleted for the caller's own tasks only."""

    async def test_the_card_declares_push_notifications(self, a2a: A2A) -> None:
        assert a2a.agent.card.card["capabilities"]["pushNotifications"] is True

    async def test_create_get_list_delete(self, a2a: A2A) -> None:
        task = await a2a.send("x")
        params = {"taskId": task["id"], "id": "c1", "url": HOOK, "token": "tok",
                  "authentication": {"scheme": "Bearer", "credentials": "secret"}}  # fmt: skip
        created = await a2a.result("CreateTaskPushNotificationConfig", params)
        assert created["id"] == "c1" and created["taskId"] == task["id"]
        assert created["url"] == HOOK and created["token"] == "tok"
        # the credentials are write-only: a secret never read back
        assert created["authentication"] == {"scheme": "Bearer"}
        got = await a2a.result("GetTaskPushNotificationConfig", {"taskId": task["id"], "id": "c1"})
        assert got == created
        other = await a2a.result(
            "CreateTaskPushNotificationConfig", {"taskId": task["id"], "url": HOOK + "/2"}
        )
        assert other["id"] and other["id"] != "c1"  # the agent names a config left unnamed
        listed = await a2a.result("ListTaskPushNotificationConfigs", {"taskId": task["id"]})
        assert [c["id"] for c in listed["configs"]] == ["c1", other["id"]]
        assert await a2a.result(
            "DeleteTaskPushNotificationConfig", {"taskId": task["id"], "id": "c1"}
        ) in (None, {})
        listed = await a2a.result("ListTaskPushNotificationConfigs", {"taskId": task["id"]})
        assert [c["id"] for c in listed["configs"]] == [other["id"]]

    async def test_a_config_id_is_replaced_not_doubled(self, a2a: A2A) -> None:
        task = await a2a.send("x")
        for url in (HOOK, HOOK + "/new"):
            params = {"taskId": task["id"], "id": "same", "url": url}
            await a2a.result("CreateTaskPushNotificationConfig", params)
        listed = await a2a.result("ListTaskPushNotificationConfigs", {"taskId": task["id"]})
        assert [(c["id"], c["url"]) for c in listed["configs"]] == [("same", HOOK + "/new")]

    async def test_delete_is_idempotent(self, a2a: A2A) -> None:
        task = await a2a.send("x")
        params = {"taskId": task["id"], "id": "never-made"}
        for _ in range(2):
            assert await a2a.result("DeleteTaskPushNotificationConfig", params) in (None, {})

    async def test_list_pages(self, a2a: A2A) -> None:
        task = await a2a.send("x")
        for n in range(3):
            params = {"taskId": task["id"], "id": f"c{n}", "url": HOOK}
            await a2a.result("CreateTaskPushNotificationConfig", params)
        first = await a2a.result(
            "ListTaskPushNotificationConfigs", {"taskId": task["id"], "pageSize": 2}
        )
        assert [c["id"] for c in first["configs"]] == ["c0", "c1"]
        rest = await a2a.result(
            "ListTaskPushNotificationConfigs",
            {"taskId": task["id"], "pageSize": 2, "pageToken": first["nextPageToken"]},
        )
        assert [c["id"] for c in rest["configs"]] == ["c2"]
        assert not rest.get("nextPageToken")

    @pytest.mark.parametrize(
        ("method", "params"),
        [
            ("CreateTaskPushNotificationConfig", {"taskId": "no-such-task", "url": HOOK}),
            ("GetTaskPushNotificationConfig", {"taskId": "no-such-task", "id": "c"}),
            ("ListTaskPushNotificationConfigs", {"taskId": "no-such-task"}),
            ("DeleteTaskPushNotificationConfig", {"taskId": "no-such-task", "id": "c"}),
        ],
    )
    async def test_an_unknown_task_is_not_found(
        self, a2a: A2A, method: str, params: dict[str, Any]
    ) -> None:
        assert await a2a.error(method, params) == -32001

    async def test_an_unknown_config_is_not_found(self, a2a: A2A) -> None:
        task = await a2a.send("x")
        params = {"taskId": task["id"], "id": "no-such-config"}
        assert await a2a.error("GetTaskPushNotificationConfig", params) == -32001

    @pytest.mark.parametrize(
        "url",
        [
            "http://hooks.example/a2a",  # https only
            "ftp://hooks.example/a2a",
            "https://user:pw@hooks.example/a2a",  # credentials go in authentication
            "https:///a2a",
            "https://127.0.0.1/a2a",  # loopback
            "https://[::1]/a2a",
            "https://10.1.2.3/a2a",  # private
            "https://192.168.1.1/a2a",
            "https://169.254.169.254/latest/meta-data",  # link-local (cloud metadata)
            "https://224.0.0.1/a2a",  # multicast
            "https://0.0.0.0/a2a",  # unspecified
            "https://[::ffff:127.0.0.1]/a2a",  # IPv4-mapped loopback
            "https://hooks.example/" + "x" * 2048,
            "https://hooks.example:0/a2a",
        ],
    )
    async def test_a_webhook_that_could_reach_inside_is_refused(self, a2a: A2A, url: str) -> None:
        task = await a2a.send("x")
        params = {"taskId": task["id"], "url": url}
        assert await a2a.error("CreateTaskPushNotificationConfig", params) == -32602

    @pytest.mark.parametrize(
        "extra",
        [
            {"token": "a\r\nX-Injected: 1"},  # header injection
            {"token": "t" * 4097},
            {"authentication": {"scheme": "Bearer x", "credentials": "c"}},
            {"authentication": {"scheme": "Bearer", "credentials": "c\nd"}},
        ],
    )
    async def test_what_goes_in_headers_is_checked(self, a2a: A2A, extra: dict[str, Any]) -> None:
        task = await a2a.send("x")
        params = {"taskId": task["id"], "url": HOOK, **extra}
        assert await a2a.error("CreateTaskPushNotificationConfig", params) == -32602

    async def test_a_webhook_in_send_message_is_checked(self, a2a: A2A) -> None:
        config = {"taskPushNotificationConfig": {"url": "https://10.0.0.1/a2a"}}
        params = {"message": message("x"), "configuration": config}
        assert await a2a.error("SendMessage", params) == -32602

    async def test_a_webhook_set_by_send_message_is_listed(self, a2a: A2A) -> None:
        config = {"taskPushNotificationConfig": {"url": HOOK, "id": "from-send"}}
        task = await a2a.send("x", configuration=config)
        listed = await a2a.result("ListTaskPushNotificationConfigs", {"taskId": task["id"]})
        assert [(c["id"], c["url"]) for c in listed["configs"]] == [("from-send", HOOK)]

    @pytest.mark.parametrize("config_id", ["", "x" * 1025, "a\x00b"])
    async def test_config_ids_are_checked(self, a2a: A2A, config_id: str) -> None:
        task = await a2a.send("x")
        params = {"taskId": task["id"], "id": config_id}
        assert await a2a.error("GetTaskPushNotificationConfig", params) == -32602


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
