"""The handler of the example agents (deploy/compose.yaml, the systemd units):
answers every request with its text, reversed. Replace it with your own:
``sealwire serve --handler MODULE:FUNCTION`` imports any async function that
takes a :class:`sealwire.agent.TaskContext`."""

from __future__ import annotations

from sealwire.agent import TaskContext


async def handle(task: TaskContext) -> None:
    text = "".join(part.text or "" for part in task.message.parts)
    await task.complete(text[::-1])
