"""The request and response shapes of the A2A v1.0 operations (spec §3, §9).

Each JSON-RPC method's ``params`` is one of the request classes here and its
``result`` one of the response classes (or a :class:`~sealwire.model.Task`,
an :class:`~sealwire.model.AgentCard`...). ``tenant`` is the optional tenant
path parameter of v1.0; it is carried but not interpreted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from attrs import field, frozen

from sealwire.model._message import TIMESTAMP, Message, _check_one_of, blank_to_none
from sealwire.model._task import (
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
)

__all__ = [
    "AuthenticationInfo",
    "CancelTaskRequest",
    "DeleteTaskPushNotificationConfigRequest",
    "GetExtendedAgentCardRequest",
    "GetTaskPushNotificationConfigRequest",
    "GetTaskRequest",
    "ListTaskPushNotificationConfigsRequest",
    "ListTaskPushNotificationConfigsResponse",
    "ListTasksRequest",
    "ListTasksResponse",
    "SendMessageConfiguration",
    "SendMessageRequest",
    "SendMessageResponse",
    "StreamResponse",
    "SubscribeToTaskRequest",
    "TaskPushNotificationConfig",
]


@frozen
class AuthenticationInfo:
    """How the agent authenticates to a push-notification endpoint (spec §4.3.2).

    ``credentials`` is a secret: it never appears in ``repr``.
    """

    scheme: str
    credentials: str | None = field(default=None, converter=blank_to_none, repr=False)


@frozen(kw_only=True)
class TaskPushNotificationConfig:
    """Where and how to push a task's updates (spec §4.3.1).

    ``token`` is a secret shared with the endpoint: it never appears in ``repr``.
    """

    url: str
    id: str | None = field(default=None, converter=blank_to_none)
    task_id: str | None = field(default=None, converter=blank_to_none)
    token: str | None = field(default=None, converter=blank_to_none, repr=False)
    authentication: AuthenticationInfo | None = None
    tenant: str | None = field(default=None, converter=blank_to_none)


@frozen(kw_only=True)
class SendMessageConfiguration:
    """Options of a ``SendMessage`` request (spec §3.2.2)."""

    accepted_output_modes: tuple[str, ...] = ()
    task_push_notification_config: TaskPushNotificationConfig | None = None
    history_length: int | None = None
    return_immediately: bool = False


@frozen(kw_only=True)
class SendMessageRequest:
    """Params of ``SendMessage`` and ``SendStreamingMessage`` (spec §3.2.1)."""

    message: Message
    configuration: SendMessageConfiguration | None = None
    metadata: Mapping[str, Any] | None = None
    tenant: str | None = field(default=None, converter=blank_to_none)


@frozen(kw_only=True)
class GetTaskRequest:
    """Params of ``GetTask`` (spec §3.1.3)."""

    id: str
    history_length: int | None = None
    tenant: str | None = field(default=None, converter=blank_to_none)


@frozen(kw_only=True)
class ListTasksRequest:
    """Params of ``ListTasks`` (spec §3.1.4); every filter is optional."""

    context_id: str | None = field(default=None, converter=blank_to_none)
    status: TaskState | None = None
    page_size: int | None = None
    page_token: str | None = field(default=None, converter=blank_to_none)
    history_length: int | None = None
    status_timestamp_after: str | None = field(default=None, metadata=TIMESTAMP)
    include_artifacts: bool | None = None
    tenant: str | None = field(default=None, converter=blank_to_none)


@frozen(kw_only=True)
class ListTasksResponse:
    """Result of ``ListTasks``: a page of tasks (spec §3.1.4)."""

    tasks: tuple[Task, ...] = ()
    next_page_token: str = ""
    page_size: int = 0
    total_size: int = 0


@frozen(kw_only=True)
class CancelTaskRequest:
    """Params of ``CancelTask`` (spec §3.1.5)."""

    id: str
    metadata: Mapping[str, Any] | None = None
    tenant: str | None = field(default=None, converter=blank_to_none)


@frozen(kw_only=True)
class SubscribeToTaskRequest:
    """Params of ``SubscribeToTask`` (spec §3.1.6)."""

    id: str
    tenant: str | None = field(default=None, converter=blank_to_none)


@frozen(kw_only=True)
class GetTaskPushNotificationConfigRequest:
    """Params of ``GetTaskPushNotificationConfig`` (spec §3.1.8)."""

    task_id: str
    id: str
    tenant: str | None = field(default=None, converter=blank_to_none)


@frozen(kw_only=True)
class DeleteTaskPushNotificationConfigRequest:
    """Params of ``DeleteTaskPushNotificationConfig`` (spec §3.1.10)."""

    task_id: str
    id: str
    tenant: str | None = field(default=None, converter=blank_to_none)


@frozen(kw_only=True)
class ListTaskPushNotificationConfigsRequest:
    """Params of ``ListTaskPushNotificationConfigs`` (spec §3.1.9)."""

    task_id: str
    page_size: int = 0
    page_token: str | None = field(default=None, converter=blank_to_none)
    tenant: str | None = field(default=None, converter=blank_to_none)


@frozen(kw_only=True)
class ListTaskPushNotificationConfigsResponse:
    """Result of ``ListTaskPushNotificationConfigs`` (spec §3.1.9)."""

    configs: tuple[TaskPushNotificationConfig, ...] = ()
    next_page_token: str | None = field(default=None, converter=blank_to_none)


@frozen(kw_only=True)
class GetExtendedAgentCardRequest:
    """Params of ``GetExtendedAgentCard`` (spec §3.1.11)."""

    tenant: str | None = field(default=None, converter=blank_to_none)


@frozen(kw_only=True)
class SendMessageResponse:
    """Result of ``SendMessage``: exactly one of a task or a message (spec §3.1.1)."""

    ONEOF: ClassVar[tuple[str, ...]] = ("task", "message")

    task: Task | None = None
    message: Message | None = None

    def __attrs_post_init__(self) -> None:
        _check_one_of(self, self.ONEOF)


@frozen(kw_only=True)
class StreamResponse:
    """One event of a stream, or a push payload: exactly one of its four fields (spec §3.2.3)."""

    ONEOF: ClassVar[tuple[str, ...]] = ("task", "message", "status_update", "artifact_update")

    task: Task | None = None
    message: Message | None = None
    status_update: TaskStatusUpdateEvent | None = None
    artifact_update: TaskArtifactUpdateEvent | None = None

    def __attrs_post_init__(self) -> None:
        _check_one_of(self, self.ONEOF)

    @property
    def payload(self) -> Task | Message | TaskStatusUpdateEvent | TaskArtifactUpdateEvent:
        """The one object this event carries."""
        value = getattr(self, next(n for n in self.ONEOF if getattr(self, n) is not None))
        return value  # type: ignore[no-any-return]
