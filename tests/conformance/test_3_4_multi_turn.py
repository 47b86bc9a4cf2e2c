"""A2A v1.0 §3.4, multi-turn interactions: contexts (§3.4.1), task ids (§3.4.2) and
the conversation patterns (§3.4.3): input required, follow-ups to open tasks."""

from __future__ import annotations

from a2a_conformance import A2A, message


class TestContextIdentifiers:
    """§3.4.1: the server makes a context when none is sent; one sent is kept."""

    async def test_generated_and_kept(self, a2a: A2A) -> None:
        first = await a2a.send("a")
        assert first["contextId"]
        second = await a2a.send("b", contextId=first["contextId"])
        assert second["contextId"] == first["contextId"] and second["id"] != first["id"]


class TestTaskIdentifiers:
    """§3.4.2: task ids are the server's; a client's must name an existing task."""

    async def test_unknown_task(self, a2a: A2A) -> None:
        params = {"message": message("x", taskId="made-up")}
        assert await a2a.error("SendMessage", params) == -32001

    async def test_unique(self, a2a: A2A) -> None:
        ids = {(await a2a.send(f"t{i}"))["id"] for i in range(3)}
        assert len(ids) == 3


class TestConversationPatterns:
    """§3.4.3: input required resumes; open tasks take follow-ups; contexts must match."""

    async def test_input_required_then_resumed(self, a2a: A2A) -> None:
        asking = await a2a.send("ask")
        assert asking["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"
        resumed = await a2a.send("more", taskId=asking["id"])
        assert resumed["id"] == asking["id"]
        assert resumed["status"]["state"] == "TASK_STATE_COMPLETED"
        assert resumed["contextId"] == asking["contextId"]  # inferred from the task

    async def test_follow_ups_to_an_open_task(self, a2a: A2A) -> None:
        now = {"returnImmediately": True}
        task = await a2a.send("chat", configuration=now)
        for word in ("one", "two"):
            answer = await a2a.send(word, taskId=task["id"], configuration=now)
            assert answer["id"] == task["id"]
        done = await a2a.send("bye", taskId=task["id"], contextId=task["contextId"])
        assert done["status"]["state"] == "TASK_STATE_COMPLETED"
        assert [a["parts"][0]["text"] for a in done["artifacts"]] == ["ONE", "TWO"]
        users = [m["parts"][0]["text"] for m in done["history"] if m["role"] == "ROLE_USER"]
        assert users == ["chat", "one", "two", "bye"]

    async def test_a_mismatched_context_is_refused(self, a2a: A2A) -> None:
        asking = await a2a.send("ask")
        params = {"message": message("x", taskId=asking["id"], contextId="another")}
        assert await a2a.error("SendMessage", params) == -32602
        still = await a2a.result("GetTask", {"id": asking["id"]})
        assert still["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"
