"""Issue item 15.5: nothing acknowledged is lost, and nothing done twice, when the
receiving agent crashes.

The receiver runs in its own process on a SQLite store and is killed with SIGKILL
again and again, at random points between receiving a request, recording its
task, handling it and sending the answer, while a sender has N requests in
flight through a real relay. After the restarts every request is answered
exactly once: each call gets its own answer, the receiver's store holds exactly
one task per request, its inbox and owed answers are empty, and the sender never
saw a second answer to a request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from pathlib import Path

import pytest
from crashing import CrashingReceiver, assert_each_served_once, keys_left
from waiting import until

from sealwire.agent import Agent
from sealwire.identity import Identity
from sealwire.model import Task, TaskState
from sealwire.relay import RelayClient
from sealwire.store import MemoryStore

REQUESTS = 30
KILLS = 6
TIMEOUT = 90
"""Seconds for every request to be answered once the kills are over."""


async def test_receiver_killed_repeatedly_every_request_answered_exactly_once(
    tmp_path: Path, sqlite_relay_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sealwire.agent._rpc")
    rng = random.Random(1505)
    receiver = CrashingReceiver(tmp_path, sqlite_relay_url, handler_seconds=0.02)
    await receiver.start()
    sender_id = Identity.generate()
    sender_relay = RelayClient(sqlite_relay_url, sender_id)
    sender = Agent(
        sender_id, MemoryStore(), name="sender", relay=sender_relay,
    )  # fmt: skip
    calls: list[asyncio.Future[Task | object]] = []
    try:
        await sender.start()
        peer = sender.peer(json.loads(receiver.card_file.read_text()))
        texts = [f"request {i}" for i in range(REQUESTS)]
        calls = [asyncio.ensure_future(sender.send_message(peer, text)) for text in texts]
        await receiver.kill_while_serving(KILLS, rng, calls)
        answers = await asyncio.wait_for(asyncio.gather(*calls), TIMEOUT)
        for text, answer in zip(texts, answers, strict=True):
            assert isinstance(answer, Task)
            assert answer.status.state is TaskState.COMPLETED
            assert answer.status.message is not None
            assert answer.status.message.parts[0].text == f"answer to {text}"
        # An answer reaches the sender before the receiver drops its "answer owed"
        # record: the last kill must come after that, or the record stays (and the
        # answer would be sent again at the next start, as it must).
        await until(lambda: not keys_left(receiver, "mailbox.answers"), "answers recorded sent", 60)
    finally:
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        await sender.stop()
        await sender_relay.close()
        await receiver.kill()
    # no second answer reached the sender
    assert not [r for r in caplog.records if "unknown request id" in r.getMessage()]
    # one task per request, each answered; nothing left to hand on or to answer
    assert_each_served_once(receiver, texts, "mailbox")
