"""A group member killed while it serves requests answers each of them once.

The member runs in its own process on a SQLite store and is killed with SIGKILL
again and again while a requester has N group requests in flight through a real
relay: at random times, and as a handler starts (its task recorded, its answer
not sent). After the restarts every request has the member's answer: each
``send_to_group`` gets one reply, a result, the member's store holds one task
per request and nothing left to hand on or to answer, and no answer came twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest
from crashing import CrashingReceiver, assert_each_served_once, keys_left
from waiting import until

from sealwire.agent import Agent
from sealwire.identity import Identity
from sealwire.relay import RelayClient
from sealwire.store import MemoryStore

REQUESTS = 24
SPACING = 0.25
"""Seconds between two requests: they go on while the member is killed and restarted."""
KILLS = 6
HANDLER_SECONDS = 0.3
"""The member's handler takes up to this long: a kill as it starts lands inside it."""
TIMEOUT = 120
"""Seconds each request waits for the member's answer, the kills included."""


async def test_member_killed_repeatedly_every_group_request_answered_exactly_once(
    tmp_path: Path,
    sqlite_relay_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sealwire.agent._group_answers")
    rng = random.Random(1506)
    member = CrashingReceiver(tmp_path, sqlite_relay_url, handler_seconds=HANDLER_SECONDS)
    await member.start()
    asker_id = Identity.generate()
    asker_relay = RelayClient(sqlite_relay_url, asker_id)
    asker = Agent(asker_id, MemoryStore(), name="asker", relay=asker_relay)
    calls: list[asyncio.Future[Any]] = []
    try:
        await asker.start()
        group = await asker.create_group()
        await asker.add_to_group(group, [json.loads(member.card_file.read_text())])
        texts = [f"request {i}" for i in range(REQUESTS)]

        async def ask() -> None:  # the requests spread over the kills
            for text in texts:
                calls.append(
                    asyncio.ensure_future(asker.send_to_group(group, text, timeout=TIMEOUT))
                )
                await asyncio.sleep(SPACING)

        asking = asyncio.create_task(ask())
        await member.kill_while_serving(KILLS, rng, calls)
        await asking
        replies = await asyncio.gather(*calls)
        for text, (reply,) in zip(texts, replies, strict=True):
            assert reply.error is None, (text, reply.error)
            assert reply.result is not None
            assert reply.result.status.message.parts[0].text == f"answer to {text}"  # type: ignore[union-attr]
        # The answer reaches the asker before the member drops its "answer owed" record.
        await until(lambda: not keys_left(member, "group.answers"), "answers recorded sent", 60)
    finally:
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        await asker.stop()
        await asker_relay.close()
        await member.kill()
    # no second answer reached the asker
    assert not [r for r in caplog.records if "waits no more" in r.getMessage()]
    assert_each_served_once(member, texts, "group")
