"""A2A v1.0 §5.7, field presence: every field a2a.proto marks REQUIRED is in every
answer (arrays with at least one element), and unrecognised fields are ignored."""

from __future__ import annotations

from typing import Any

from a2a_conformance import A2A, message

REQUIRED = {
    "Task": ("id", "status"),
    "TaskStatus": ("state",),
    "Message": ("messageId", "role", "parts"),
    "Artifact": ("artifactId", "parts"),
    "TaskStatusUpdateEvent": ("taskId", "contextId", "status"),
    "TaskArtifactUpdateEvent": ("taskId", "contextId", "artifact"),
    "ListTasksResponse": ("tasks", "nextPageToken", "pageSize", "totalSize"),
}
"""a2a.proto's REQUIRED fields of the objects an agent answers with."""
REQUIRED_ARRAYS = {"parts"}


def check(kind: str, value: dict[str, Any]) -> None:
    for name in REQUIRED[kind]:
        assert name in value, f"{kind}.{name} is missing from {value}"
        if name in REQUIRED_ARRAYS:
            assert value[name], f"{kind}.{name} is empty"


def check_message(value: dict[str, Any]) -> None:
    check("Message", value)


def check_task(value: dict[str, Any]) -> None:
    check("Task", value)
    check("TaskStatus", value["status"])
    if "message" in value["status"]:
        check_message(value["status"]["message"])
    for item in value.get("history", []):
        check_message(item)
    for artifact in value.get("artifacts", []):
        check("Artifact", artifact)


async def test_every_answer_has_its_required_fields(a2a: A2A) -> None:
    check_task(await a2a.send("abc"))
    check_task(await a2a.send("ask"))
    check_message((await a2a.result("SendMessage", {"message": message("hi")}))["message"])
    page = await a2a.result("ListTasks", {"includeArtifacts": True})
    check("ListTasksResponse", page)
    for task in page["tasks"]:
        check_task(task)
    empty = await a2a.result("ListTasks", {"contextId": "nothing-here"})
    check("ListTasksResponse", empty)
    for event in await a2a.stream("SendStreamingMessage", {"message": message("xyz")}):
        result = event["result"]
        if "task" in result:
            check_task(result["task"])
        elif "statusUpdate" in result:
            check("TaskStatusUpdateEvent", result["statusUpdate"])
        else:
            check("TaskArtifactUpdateEvent", result["artifactUpdate"])
            check("Artifact", result["artifactUpdate"]["artifact"])


async def test_unrecognised_fields_are_ignored(a2a: A2A) -> None:
    params = {"message": message("abc", futureField={"x": 1}), "futureParam": True}
    task = (await a2a.result("SendMessage", params))["task"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    assert "futureField" not in task["history"][0]


async def test_required_arrays_must_not_be_empty(a2a: A2A) -> None:
    bare = {"messageId": "m", "role": "ROLE_USER"}
    assert await a2a.error("SendMessage", {"message": bare | {"parts": []}}) == -32602
    assert await a2a.error("SendMessage", {"message": bare}) == -32602
    assert (await a2a.result("ListTasks", {}))["totalSize"] == 0  # nothing was created
