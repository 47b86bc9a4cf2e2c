"""Receiving agent for the SIGKILL tests of the mailbox and group paths (run by
:class:`crashing.CrashingReceiver`, not by pytest).

Usage: ``python crash_agent.py STORE RELAY_URL CARD_OUT SEED HANDLER_SECONDS`` with the
store key in $SEALWIRE_STORE_KEY. The identity lives in the store, so every run
is the same agent. Prints ``ready`` once serving, ``handling TEXT`` as its
handler starts on a request, and answers ``answer to TEXT``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys

from sealwire.agent import Agent, TaskContext
from sealwire.identity import Identity
from sealwire.relay import RelayClient
from sealwire.store import SqliteStore, StoreKey

IDENTITY = ("test.identity", "self")


async def main() -> None:
    path, url, card_out, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    max_handler_seconds = float(sys.argv[5])
    rng = random.Random(seed)
    store = SqliteStore.open(path, StoreKey.from_env())
    raw = store.get(*IDENTITY)
    if raw is None:
        identity = Identity.generate()
        store.put(*IDENTITY, identity.private_bytes_for_storage())
    else:
        identity = Identity.from_storage_bytes(raw)
    relay = RelayClient(url, identity)
    agent = Agent(identity, store, name="receiver", relay=relay)

    @agent.on_message
    async def handle(task: TaskContext) -> None:
        text = task.message.parts[0].text or ""
        print(f"handling {text}", flush=True)
        await asyncio.sleep(rng.random() * max_handler_seconds)
        await task.complete(f"answer to {text}")

    card = await agent.start()
    with open(card_out + ".tmp", "w") as out:
        json.dump(dict(card.card), out)
    os.replace(card_out + ".tmp", card_out)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
