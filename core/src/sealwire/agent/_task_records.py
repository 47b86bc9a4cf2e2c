"""How a task is kept in the store: its record (owner, task, webhooks) as bytes and
back, under :data:`TASKS_NAMESPACE` keyed by a task id that :func:`check_task_id`
accepted."""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

from sealwire.codec import InvalidParamsError, from_json, to_json
from sealwire.model import Task, TaskPushNotificationConfig

__all__ = ["MAX_TASK_ID_LENGTH", "TASKS_NAMESPACE", "TaskRecord", "check_task_id"]

TASKS_NAMESPACE = "a2a.tasks"
MAX_TASK_ID_LENGTH = 1024
"""Characters in a task id a caller may name: the store's key limit (longer ones are
not ours, and must fail as invalid params before reaching the store)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@attrs.frozen
class TaskRecord:
    """A task as stored: the agent that created it, the task, and its webhooks."""

    owner: str
    task: Task
    push: tuple[TaskPushNotificationConfig, ...] = ()

    def to_bytes(self) -> bytes:
        content: dict[str, Any] = {"owner": self.owner, "task": to_json(self.task)}
        if self.push:
            content["push"] = [to_json(config) for config in self.push]
        return json.dumps(content).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> TaskRecord:
        record = json.loads(raw)
        return cls(
            owner=record["owner"],
            task=from_json(Task, record["task"]),
            push=tuple(from_json(TaskPushNotificationConfig, c) for c in record.get("push", ())),
        )


def check_task_id(task_id: str, field: str = "id") -> None:
    """Raise InvalidParamsError unless ``task_id`` could name a task: 1 to
    :data:`MAX_TASK_ID_LENGTH` characters of UTF-8 text without control characters."""
    if not task_id:
        raise InvalidParamsError("a task id must not be empty", field=field)
    if len(task_id) > MAX_TASK_ID_LENGTH:
        raise InvalidParamsError(
            f"a task id has at most {MAX_TASK_ID_LENGTH} characters", field=field
        )
    if _CONTROL.search(task_id):
        raise InvalidParamsError("a task id must not hold control characters", field=field)
    try:
        task_id.encode()
    except UnicodeEncodeError:
        raise InvalidParamsError("a task id must be UTF-8 text", field=field) from None
