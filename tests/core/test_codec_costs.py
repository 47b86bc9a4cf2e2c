"""The model codec's per-object work (issue 14): a nested model's plan is looked up once
per codec, not once per object encoded or decoded; a plain ASCII string is taken as is;
the JSON written and the objects read are what they were."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sealwire.codec import InvalidParamsError, _json, from_json, to_json
from sealwire.model import (
    Artifact,
    ListTasksResponse,
    Message,
    Part,
    Role,
    Task,
    TaskState,
    TaskStatus,
)


def _task() -> Task:
    asked = Message(
        message_id="m1", role=Role.USER, parts=(Part(text="many"),), task_id="t", context_id="c"
    )
    answer = Message(message_id="m2", role=Role.AGENT, parts=(Part(text="ok \u00e9"),))
    return Task(
        id="t",
        context_id="c",
        status=TaskStatus(
            state=TaskState.COMPLETED, message=answer, timestamp="2026-12-07T01:02:03.456Z"
        ),
        history=(asked, answer),
        artifacts=(Artifact(artifact_id="a", parts=(Part(data={"k": [1, None]}),)),),
    )


# The JSON the codec wrote before this change (main's code, same objects), key order too.
EXPECTED_TASK = {
    "id": "t",
    "contextId": "c",
    "status": {
        "state": "TASK_STATE_COMPLETED",
        "message": {"messageId": "m2", "role": "ROLE_AGENT", "parts": [{"text": "ok \u00e9"}]},
        "timestamp": "2026-12-07T01:02:03.456Z",
    },
    "artifacts": [{"artifactId": "a", "parts": [{"data": {"k": [1, None]}}]}],
    "history": [
        {
            "messageId": "m1",
            "role": "ROLE_USER",
            "parts": [{"text": "many"}],
            "contextId": "c",
            "taskId": "t",
        },
        {"messageId": "m2", "role": "ROLE_AGENT", "parts": [{"text": "ok \u00e9"}]},
    ],
}


def test_the_json_written_and_read_is_what_it_was() -> None:
    task = _task()
    assert to_json(task) == EXPECTED_TASK
    assert json.dumps(to_json(task)) == json.dumps(EXPECTED_TASK)
    assert from_json(Task, EXPECTED_TASK) == task
    empty = ListTasksResponse(tasks=(), next_page_token="", page_size=0, total_size=0)
    assert to_json(empty) == {"tasks": [], "nextPageToken": "", "pageSize": 0, "totalSize": 0}


def test_a_nested_models_plan_is_looked_up_once_per_codec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    task = _task()
    to_json(task), from_json(Task, EXPECTED_TASK)  # every plan built
    looked_up: list[type] = []
    real = _json._plan

    def counting(cls: type) -> Any:
        looked_up.append(cls)
        return real(cls)

    monkeypatch.setattr(_json, "_plan", counting)
    for _ in range(3):
        assert to_json(task) == EXPECTED_TASK
        assert from_json(Task, EXPECTED_TASK) == task
    assert looked_up == [Task, Task] * 3  # the top level only: the nested ones are bound


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (7, "message.messageId"),
        ("\ud800", "message.messageId"),
        ("caf\u00e9\ud800", "message.messageId"),
    ],
)
def test_a_string_field_still_refuses_what_it_refused(value: Any, field: str) -> None:
    data = {"messageId": value, "role": "ROLE_USER", "parts": [{"text": "x"}]}
    with pytest.raises(InvalidParamsError) as caught:
        from_json(Message, data, path="message")
    assert caught.value.field == field


def test_non_ascii_text_is_read_as_before() -> None:
    data = {"messageId": "caf\u00e9 \u2603", "role": "ROLE_USER", "parts": [{"text": "\u00e9"}]}
    assert from_json(Message, data).message_id == "caf\u00e9 \u2603"
