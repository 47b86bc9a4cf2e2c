"""Durability: a relay process killed with SIGKILL loses nothing and duplicates nothing.

The relay runs as ``python -m sealwire.relay --config FILE`` (what ``sealwire
relay serve`` runs), on each backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from relay_process import RelayProcess

from sealwire.identity import Identity
from sealwire.relay import RelayClient
from sealwire_relay import RelayConfig

MESSAGES = 40
ACKED = 10


async def test_sigkill_loses_and_duplicates_nothing(
    make_config: Callable[..., RelayConfig], tmp_path: Path
) -> None:
    config = make_config("durable")
    proc = RelayProcess.for_config(config, tmp_path)
    await asyncio.to_thread(proc.start)
    alice, bob = Identity.generate(), Identity.generate()
    try:
        async with RelayClient(config.url, alice) as a, RelayClient(config.url, bob) as b:
            await a.publish_key_package("kp", b"KP")
            for i in range(MESSAGES):
                await b.send(alice.agent_id, f"m{i}", f"payload {i}".encode())
            await a.ack((await a.fetch(limit=500))[:ACKED])
            proc.kill()
            await asyncio.to_thread(proc.start)
            # The client notices the new relay process and authenticates again.
            for i in range(MESSAGES):  # the sender retries everything: no duplicates
                await b.send(alice.agent_id, f"m{i}", f"payload {i}".encode())
            got = await a.fetch(limit=500)
            assert [d.message_id for d in got] == [f"m{i}" for i in range(ACKED, MESSAGES)]
            assert [d.envelope for d in got] == [
                f"payload {i}".encode() for i in range(ACKED, MESSAGES)
            ]
            assert await b.fetch_key_package(alice.agent_id) == b"KP"
            await a.ack(got)
            assert await a.fetch() == []
    finally:
        proc.kill()
