"""Listing tasks (ListTasks, spec §3.1.4): the order of a listing, its opaque page
tokens, the checks of a request, and a task's history cut to the length asked."""

from __future__ import annotations

import base64
import binascii
import datetime
import json

import attrs

from sealwire.agent._task_records import MAX_TASK_ID_LENGTH
from sealwire.codec import InvalidParamsError
from sealwire.model import ListTasksRequest, Task

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "check_list_request",
    "cut_history",
    "to_instant",
    "page_token",
    "read_page_token",
    "sort_key",
]

DEFAULT_PAGE_SIZE = 50
"""Tasks in a ListTasks page when the caller names no ``pageSize`` (spec §3.1.4)."""
MAX_PAGE_SIZE = 100
"""The largest ``pageSize`` a caller may ask for (spec §3.1.4: 1 to 100)."""
MAX_PAGE_TOKEN = 2 * MAX_TASK_ID_LENGTH
"""Characters of a ``pageToken`` looked at: ours encode a timestamp and a task id."""


def to_instant(timestamp: str) -> datetime.datetime:
    """An RFC 3339 timestamp (already checked by the codec) as an aware datetime."""
    text = timestamp.replace("z", "Z").replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python reads at most microseconds: cut nanoseconds
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    return datetime.datetime.fromisoformat(text)


def sort_key(task: Task) -> tuple[datetime.datetime, str]:
    """Most recently updated first (then by id, so the order is total)."""
    if task.status.timestamp is None:
        return (datetime.datetime.min.replace(tzinfo=datetime.UTC), task.id)
    return (to_instant(task.status.timestamp), task.id)


def page_token(key: tuple[datetime.datetime, str]) -> str:
    """The opaque token resuming a listing after the task whose sort key is ``key``."""
    raw = json.dumps([key[0].isoformat(), key[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def read_page_token(token: str) -> tuple[datetime.datetime, str]:
    bad = InvalidParamsError("invalid pageToken", field="pageToken")
    if len(token) > MAX_PAGE_TOKEN:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        when, task_id = json.loads(raw)
        instant = datetime.datetime.fromisoformat(when)
    except (binascii.Error, ValueError, TypeError, RecursionError):
        raise bad from None
    if not isinstance(task_id, str) or instant.tzinfo is None:
        raise bad
    return instant, task_id


def check_list_request(request: ListTasksRequest) -> None:
    if request.page_size is not None and not 1 <= request.page_size <= MAX_PAGE_SIZE:
        raise InvalidParamsError(
            f"pageSize must be between 1 and {MAX_PAGE_SIZE}", field="pageSize"
        )
    if request.history_length is not None and request.history_length < 0:
        raise InvalidParamsError("historyLength must not be negative", field="historyLength")


def cut_history(task: Task, history_length: int | None) -> Task:
    """The task with only its last ``history_length`` messages (all when ``None``)."""
    if history_length is None:
        return task
    if history_length < 0:
        raise InvalidParamsError("historyLength must not be negative")
    kept = task.history[max(0, len(task.history) - history_length) :] if history_length else ()
    return attrs.evolve(task, history=kept)
