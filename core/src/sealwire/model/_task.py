"""Tasks, their status, artifacts and update events (A2A v1.0 spec §4.1)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from sealwire.model._message import TIMESTAMP, Message, Part, blank_to_none

__all__ = [
    "Artifact",
    "Task",
    "TaskArtifactUpdateEvent",
    "TaskState",
    "TaskStatus",
    "TaskStatusUpdateEvent",
]


class TaskState(enum.Enum):
    """The lifecycle state of a task (spec §4.1.3).

    Members are declared in proto number order (``TASK_STATE_UNSPECIFIED`` is
    not a valid state on the wire and has no member).
    """

    SUBMITTED = "TASK_STATE_SUBMITTED"
    WORKING = "TASK_STATE_WORKING"
    COMPLETED = "TASK_STATE_COMPLETED"
    FAILED = "TASK_STATE_FAILED"
    CANCELED = "TASK_STATE_CANCELED"
    INPUT_REQUIRED = "TASK_STATE_INPUT_REQUIRED"
    REJECTED = "TASK_STATE_REJECTED"
    AUTH_REQUIRED = "TASK_STATE_AUTH_REQUIRED"

    @property
    def is_terminal(self) -> bool:
        """True for states a task never leaves: completed, failed, canceled, rejected."""
        return self in _TERMINAL

    @property
    def is_interrupted(self) -> bool:
        """True for states that wait on the client: input-required, auth-required."""
        return self in (TaskState.INPUT_REQUIRED, TaskState.AUTH_REQUIRED)


_TERMINAL = frozenset(
    {TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELED, TaskState.REJECTED}
)


@frozen
class TaskStatus:
    """A task's state, the message that goes with it and when it was set (spec §4.1.2).

    ``timestamp`` is an RFC 3339 string (``google.protobuf.Timestamp`` in JSON).
    """

    state: TaskState
    message: Message | None = field(default=None, kw_only=True)
    timestamp: str | None = field(default=None, kw_only=True, metadata=TIMESTAMP)


@frozen(kw_only=True)
class Artifact:
    """An output of a task (spec §4.1, Artifact)."""

    artifact_id: str
    parts: tuple[Part, ...]
    name: str | None = field(default=None, converter=blank_to_none)
    description: str | None = field(default=None, converter=blank_to_none)
    metadata: Mapping[str, Any] | None = None
    extensions: tuple[str, ...] = ()


@frozen(kw_only=True)
class Task:
    """A unit of work an agent performs for a client (spec §4.1.1)."""

    id: str
    context_id: str
    status: TaskStatus
    artifacts: tuple[Artifact, ...] = ()
    history: tuple[Message, ...] = ()
    metadata: Mapping[str, Any] | None = None


@frozen(kw_only=True)
class TaskStatusUpdateEvent:
    """A change of a task's status, sent on a stream (spec §4.2.1)."""

    task_id: str
    context_id: str
    status: TaskStatus
    metadata: Mapping[str, Any] | None = None


@frozen(kw_only=True)
class TaskArtifactUpdateEvent:
    """A new artifact, or a chunk of one, sent on a stream (spec §4.2.2).

    ``append`` adds the parts to the artifact with the same id already sent;
    ``last_chunk`` marks the final chunk of that artifact.
    """

    task_id: str
    context_id: str
    artifact: Artifact
    append: bool = False
    last_chunk: bool = False
    metadata: Mapping[str, Any] | None = None
