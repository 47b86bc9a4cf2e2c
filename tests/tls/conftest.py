"""Fixtures of the TLS binding tests: agents on loopback HTTPS, a handler with artifacts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sealwire.agent import Agent
from sealwire.agent._task_run import TaskContext
from sealwire_tls.testing import tls_agent


async def handler(task: TaskContext) -> None:
    """Counts and upper-cases the text, as two artifacts; ``hi`` gets a reply message."""
    text = task.message.parts[0].text or ""
    if text == "hi":
        await task.reply("hello")
        return
    await task.working("counting")
    await task.artifact(f"{len(text)} chars", name="count")
    await task.artifact(text.upper(), name="upper")
    await task.complete("done")


@pytest.fixture
async def agents() -> AsyncIterator[Callable[..., Agent]]:
    """``agents(name, **options)``: an agent offering TLS (see ``tls_agent``), not yet
    started, stopped at teardown."""
    made: list[Agent] = []

    def make(name: str, **kwargs: Any) -> Agent:
        agent = tls_agent(name, **kwargs)
        agent.on_message(handler)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        await agent.stop()
