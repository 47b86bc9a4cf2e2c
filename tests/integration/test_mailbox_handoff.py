"""The opened message is handed on in memory (brief H1 item 2).

After ``binding.open(..., keep=...)`` the router hands the ``OpenedMessage`` on
as it is: the stored copy is not serialised, parsed back and its sender's card
verified again for every message (about 0.85 ms each); it is read back only
after a restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ports import free_port

import sealwire.agent._mailbox as mailbox
from sealwire.agent import Agent, TaskContext
from sealwire.identity import Identity
from sealwire.model import Task
from sealwire.relay import RelayClient
from sealwire.store import MemoryStore
from sealwire_relay import RelayConfig, running_relay

ROUND_TRIPS = 3


async def _echo(task: TaskContext) -> None:
    await task.complete(f"echo {task.message.parts[0].text}")


async def test_live_messages_are_not_read_back_from_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_back: list[bytes] = []
    real = mailbox.read_kept_frame

    def counting(raw: bytes) -> Any:
        read_back.append(raw)
        return real(raw)

    monkeypatch.setattr(mailbox, "read_kept_frame", counting)
    config = RelayConfig(
        port=free_port(), identity_path=tmp_path / "relay.key", backend="sqlite",
        backend_options={"path": str(tmp_path / "relay.sqlite3")},
    )  # fmt: skip
    async with running_relay(config) as relay:
        ids = [Identity.generate(), Identity.generate()]
        clients = [RelayClient(relay.url, i) for i in ids]
        agents = [Agent(i, MemoryStore(), relay=c) for i, c in zip(ids, clients, strict=True)]
        for agent in agents:
            agent.on_message(_echo)
        try:
            for agent in agents:
                await agent.start()
            for i in range(ROUND_TRIPS):
                task = await agents[0].send_message(agents[0].peer(agents[1].card), f"m{i}")
                assert isinstance(task, Task) and task.status.message is not None
                assert task.status.message.parts[0].text == f"echo m{i}"
        finally:
            for agent in agents:
                await agent.stop()
            for client in clients:
                await client.close()
    assert read_back == []  # requests and answers both went on in memory
    for agent in agents:
        assert agent.store.keys(mailbox.INBOX_NAMESPACE) == []
        assert agent.store.keys(mailbox.ANSWERS_NAMESPACE) == []
