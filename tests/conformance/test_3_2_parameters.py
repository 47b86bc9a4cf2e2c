"""A2A v1.0 §3.2, operation parameters: SendMessageConfiguration (§3.2.2), history
length (§3.2.4), metadata (§3.2.5) and service parameters (§3.2.6)."""

from __future__ import annotations

from a2a_conformance import A2A, TERMINAL, message


class TestSendMessageConfiguration:
    """§3.2.2: ``returnImmediately`` answers at once; blocking waits for the end."""

    async def test_return_immediately(self, a2a: A2A) -> None:
        task = await a2a.send("slow", configuration={"returnImmediately": True})
        assert task["status"]["state"] not in TERMINAL
        assert (await a2a.result("GetTask", {"id": task["id"]}))["status"]["state"] not in TERMINAL
        a2a.gate.set()
        done = await a2a.settled(task["id"])
        assert done["status"]["state"] == "TASK_STATE_COMPLETED"
        assert done["artifacts"][0]["parts"] == [{"text": "SLOW"}]

    async def test_a_reply_after_returning_ends_the_task(self, a2a: A2A) -> None:
        """The task went out before its handler chose to reply: the reply ends it."""
        params = {"message": message("hi"), "configuration": {"returnImmediately": True}}
        result = await a2a.result("SendMessage", params)
        if "message" in result:  # the handler answered first
            assert result["message"]["parts"] == [{"text": "hello"}]
            return
        done = await a2a.settled(result["task"]["id"])
        assert done["status"]["state"] == "TASK_STATE_COMPLETED"
        assert done["status"]["message"]["parts"] == [{"text": "hello"}]

    async def test_history_length_of_the_answer(self, a2a: A2A) -> None:
        task = await a2a.send("abc", configuration={"historyLength": 1})
        assert len(task["history"]) == 1
        assert task["history"][0]["parts"] == [{"text": "done"}]


class TestHistoryLength:
    """§3.2.4: unset - everything; 0 - no history; n - the last n messages."""

    async def test_semantics(self, a2a: A2A) -> None:
        task = await a2a.send("abc")
        everything = await a2a.result("GetTask", {"id": task["id"]})
        assert len(everything["history"]) == 3
        assert "history" not in await a2a.result("GetTask", {"id": task["id"], "historyLength": 0})
        last = await a2a.result("GetTask", {"id": task["id"], "historyLength": 2})
        assert last["history"] == everything["history"][1:]


class TestMetadata:
    """§3.2.5: a message's metadata is kept as sent."""

    async def test_kept(self, a2a: A2A) -> None:
        metadata = {"trace": "t-1", "nested": {"n": [1, 2.5, True, None]}}
        task = await a2a.send("abc", metadata=metadata)
        assert task["history"][0]["metadata"] == metadata


class TestServiceParameters:
    """§3.2.6 / §3.6.2: a major version the agent does not speak is refused (-32009)."""

    async def test_unsupported_version(self, a2a: A2A) -> None:
        code = await a2a.error("GetTask", {"id": "x"}, {"A2A-Version": "9.0"})
        assert code == -32009

    async def test_supported_version(self, a2a: A2A) -> None:
        code = await a2a.error("GetTask", {"id": "x"}, {"A2A-Version": "1.0"})
        assert code == -32001
