"""Two agents over a relay, the receiver's whole state in AWS Secrets Manager (moto in
server mode, sealwire-store-aws write-through): the manager throttles every call while
a request arrives. The receiver cannot commit the ratchet step that opening it needs,
so it hands nothing on and acknowledges nothing (the relay keeps the request); once the
manager answers again the request is delivered and answered, once (issue 19: "the agent
never hands on plaintext whose state it could not commit")."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fault_proxy import FaultProxy
from moto_server import CREDENTIALS, moto_server
from relay_process import RelayProcess
from waiting import until

from sealwire.agent import Agent, TaskContext
from sealwire.identity import Identity
from sealwire.model import Task, TaskState
from sealwire.relay import RelayClient
from sealwire.store import MemoryStore, StateStore, StoreKey
from sealwire_store_aws import open_aws_store

TIMEOUT = 60
"""Seconds for the answer once the manager answers again (the router retries at most every
5 s)."""


async def _handler(task: TaskContext) -> None:
    await task.complete(f"answer to {task.message.parts[0].text}")


@pytest.fixture
def moto_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    with moto_server() as url:
        yield url


@pytest.fixture
async def relay_url(tmp_path: Path) -> AsyncIterator[str]:
    """The relay as its own process (python -m sealwire_relay)."""
    directory = tmp_path / "relay"
    directory.mkdir()
    relay = RelayProcess(
        directory, backend="sqlite", backend_options={"path": str(directory / "relay.sqlite3")}
    )
    await asyncio.to_thread(relay.start)
    try:
        yield relay.url
    finally:
        await asyncio.to_thread(relay.kill)


async def test_a_throttled_manager_delays_a_delivery_and_loses_nothing(
    tmp_path: Path, moto_url: str, relay_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sealwire.agent._mailbox")
    proxy = FaultProxy(moto_url, content_type="application/x-amz-json-1.1")
    throttled = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})
    options = {
        "prefix": "agents/receiver",
        "region": "us-east-1",
        "endpoint_url": proxy.url,
        "retries": "2",
        "retry_backoff": "0.01",
    }
    key = StoreKey.generate()
    receiver_store = open_aws_store(options, key, tmp_path)
    ids = {name: Identity.generate() for name in ("sender", "receiver")}
    relays = {name: RelayClient(relay_url, identity) for name, identity in ids.items()}
    stores: dict[str, StateStore] = {"sender": MemoryStore(), "receiver": receiver_store}
    agents = {
        name: Agent(
            ids[name],
            stores[name],
            name=name,
            relay=relays[name],
        )
        for name in ids
    }
    agents["receiver"].on_message(_handler)
    call: asyncio.Future[object] | None = None
    try:
        for agent in agents.values():
            await agent.start()
        sender, receiver = agents["sender"], agents["receiver"]
        peer = sender.peer(receiver.card)
        first = await asyncio.wait_for(sender.send_message(peer, "warm up"), TIMEOUT)
        assert isinstance(first, Task)
        tasks_before = receiver_store.keys("a2a.tasks")
        caplog.clear()
        proxy.fail(400, throttled.encode(), times=-1)
        call = asyncio.ensure_future(sender.send_message(peer, "while throttled"))
        await until(
            lambda: any("mailbox message" in r.getMessage() for r in caplog.records),
            "the receiver to fail keeping the request",
        )
        held = await relays["receiver"].fetch()
        assert len(held) == 1  # not acknowledged: the relay keeps it
        assert "mailbox.store" in receiver.health()
        assert not call.done()  # nothing was handed on
        proxy.clear()
        task = await asyncio.wait_for(call, TIMEOUT)
        assert isinstance(task, Task) and task.status.state is TaskState.COMPLETED
        assert task.status.message is not None
        assert task.status.message.parts[0].text == "answer to while throttled"
        assert len(receiver_store.keys("a2a.tasks")) == len(tasks_before) + 1  # answered once
    finally:
        if call is not None:
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
        for agent in agents.values():
            await agent.stop()
        for relay in relays.values():
            await relay.close()
        receiver_store.close()
        proxy.close()
    # another host, from the manager alone, sees the state the receiver committed
    with open_aws_store(
        {**options, "endpoint_url": moto_url, "cache": "witness.db"}, key, tmp_path
    ) as witness:
        assert len(witness.keys("a2a.tasks")) == len(tasks_before) + 1
